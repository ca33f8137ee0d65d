// Registry entry for `randlora` (PEFT RandLoraConfig, randlora Linear around nn.Linear).
#include "adapters/randlora/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

const AdapterInfo& randlora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "randlora", "RANDLORA", "Y = X Wᵀ + b + s·X (Bf Af)ᵀ, Af rows λ[k,b]·A[k] ⊙ γ[b], A, B frozen random bases",
        {randlora::forward<double>, randlora::backward<double>}, {randlora::forward<float>, randlora::backward<float>});
    a.hyper = {
        {"r", 32, HyperParamSpec::Kind::integer, "rank of each random basis; ceil(min(d_in, d_out) / r) bases"},
        {"randlora_alpha", 640, HyperParamSpec::Kind::real, "scaling = randlora_alpha / r"},
    };
    a.scaling = randlora::scaling;
    // Generic checks run at small ranks; at PEFT's default alpha (640, made for r = 32) a rank-3 check would scale the
    // update by 213 and saturate attention in a float32 model. They keep PEFT's default scaling, 640 / 32 = 20.
    a.shape_hyper = [](const Dims&, int64_t r, HyperParams& hp) { hp["randlora_alpha"] = 20.0 * double(r); };
    // The bases together span min(d_in, d_out) for any r; PEFT accepts r above it (one basis).
    a.validate = [](const Dims& d, const HyperParams& hp) {
      lowrank::validate_rank(d, hp, "r", lowrank::RankBound::none);
    };
    const auto r = [](const HyperParams& hp) { return lowrank::rank(hp); };
    const auto nb = [r](const Dims& d, const HyperParams& hp) { return randlora::num_bases(d, r(hp)); };
    const auto mn = [](const Dims& d) { return std::min(d.d_in, d.d_out); };
    const auto mx = [](const Dims& d) { return std::max(d.d_in, d.d_out); };
    a.tensors.push_back({"randlora_A", TensorRole::frozen,
                         [r, mn](const Dims& d, const HyperParams& hp) { return Shape{r(hp), 1, mn(d)}; },
                         "randlora_A.{adapter}",
                         "model-wide: kaiming_uniform (bfloat16) from torch.Generator(projection_prng_key), / std; this "
                         "layer uses the leading (r, 1, min(d_in, d_out)) block", "", {}});
    a.tensors.push_back({"randlora_B", TensorRole::frozen,
                         [r, nb, mx](const Dims& d, const HyperParams& hp) { return Shape{mx(d), nb(d, hp), r(hp)}; },
                         "randlora_B.{adapter}",
                         "model-wide: one kaiming_uniform (max_dim, 1, r) block per basis after randlora_A, / std; "
                         "leading (max(d_in, d_out), num_bases, r) block", "", {}});
    a.tensors.push_back({"randlora_lambda", TensorRole::trainable,
                         [r, nb](const Dims& d, const HyperParams& hp) { return Shape{r(hp), nb(d, hp)}; },
                         "randlora_lambda.{adapter}", "zeros", "", {}});
    a.tensors.push_back({"randlora_gamma", TensorRole::trainable,
                         [nb, mn](const Dims& d, const HyperParams& hp) { return Shape{nb(d, hp), mn(d)}; },
                         "randlora_gamma.{adapter}", "1 / max(num_bases, min(d_in, d_out)) (float32-rounded)",
                         "randlora_lambda is zero at init, so every scaled basis and dL/dγ are 0", {}});
    // The bases reach full rank: the update is a min-dim-wide product, r·nb ≈ min(d_in, d_out).
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const int64_t rank = lowrank::rank(hp) * randlora::num_bases(d, lowrank::rank(hp));
      return lowrank::forward_cost(n, d, double(rank));
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const int64_t rank = lowrank::rank(hp) * randlora::num_bases(d, lowrank::rank(hp));
      return lowrank::backward_cost(n, d, double(rank));
    };
    a.notes = {
        "the bases are model-wide buffers sized by the largest targeted layer; from_peft reads each layer's leading "
        "blocks out of the live layer rather than regenerating them (PEFT draws them in bfloat16)",
        "row k·nb + b of the scaled A meets column b·r + k of the flattened B, as in PEFT (not the paper's per-basis "
        "sum unless there is one basis); gradguard follows PEFT, whose custom backward is the exact gradient",
    };
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
