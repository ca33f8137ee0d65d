// Registry entry for `vera` (PEFT VeraConfig, vera Linear around nn.Linear).
#include "adapters/vera/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

const AdapterInfo& vera_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("vera", "VERA", "Y = X Wᵀ + b + λ_b ⊙ ((λ_d ⊙ (X Aᵀ)) Bᵀ), A, B frozen random",
                                          {vera::forward<double>, vera::backward<double>},
                                          {vera::forward<float>, vera::backward<float>});
    a.hyper = {{"r", 256, HyperParamSpec::Kind::integer, "rank of the shared random projections (PEFT default 256)"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    // VeRA's projections are random and frozen: PEFT allows (and its default r = 256 often means) r > min(d_in, d_out).
    a.validate = [](const Dims& d, const HyperParams& hp) {
      lowrank::validate_rank(d, hp, "r", lowrank::RankBound::none);
    };
    const auto r = [](const HyperParams& hp) { return lowrank::rank(hp); };
    a.tensors.push_back({"vera_A", TensorRole::frozen,
                         [r](const Dims& d, const HyperParams& hp) { return Shape{r(hp), d.d_in}; }, "vera_A.{adapter}",
                         "kaiming_uniform from torch.Generator(projection_prng_key), shared by every layer (this "
                         "layer uses the leading (r, d_in) block)", "", {}});
    a.tensors.push_back({"vera_B", TensorRole::frozen,
                         [r](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, r(hp)}; }, "vera_B.{adapter}",
                         "kaiming_uniform, drawn after vera_A from the same generator; leading (d_out, r) block", "", {}});
    a.tensors.push_back({"vera_lambda_b", TensorRole::trainable,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; }, "vera_lambda_b.{adapter}",
                         "zeros", "", {}});
    a.tensors.push_back({"vera_lambda_d", TensorRole::trainable,
                         [r](const Dims&, const HyperParams& hp) { return Shape{r(hp)}; }, "vera_lambda_d.{adapter}",
                         "d_initial (0.1)", "vera_lambda_b is zero at init, so dL/dλ_d = Σ (dY ⊙ λ_b) B ⊙ S = 0", {}});
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      return lowrank::forward_cost(n, d, lowrank::rank(hp), 1);
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      return lowrank::backward_cost(n, d, lowrank::rank(hp), 2);
    };
    a.notes = {
        "vera_A and vera_B are model-wide buffers drawn once from torch.Generator(projection_prng_key); each layer "
        "uses their leading blocks, which from_peft reads out of the live layer rather than regenerating them",
        "PEFT accepts r > min(d_in, d_out) for VeRA (random projections), and so does gradguard",
    };
    a.backends.push_back(linear::cuda_support());
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
