// Registry entry for `shira` (PEFT ShiraConfig, shira Linear around nn.Linear, the "random" mask).
#include "adapters/shira/eigen.hpp"
#include "core/lowrank.hpp"
#include "core/positions.hpp"

namespace gg {

namespace {

int64_t entries(const Dims& d, const HyperParams& hp) { return lowrank::rank(hp) * (d.d_in + d.d_out); }

// PEFT's own bound: the r (d_in + d_out) sparse entries must fit in the weight.
void validate(const Dims& d, const HyperParams& hp) {
  lowrank::validate_rank(d, hp, "r", lowrank::RankBound::none);
  if (entries(d, hp) > d.d_in * d.d_out)
    throw InputError("r", "at most d_in * d_out / (d_in + d_out) = " + std::to_string(d.d_in * d.d_out / (d.d_in + d.d_out)) +
                              " (r (d_in + d_out) entries must fit in the " + std::to_string(d.d_out) + " x " +
                              std::to_string(d.d_in) + " weight)",
                     std::to_string(lowrank::rank(hp)));
}

// Small check shapes hold fewer than r (d_in + d_out) entries at the check's rank (7 x 5 has 35 < 3 · 12): the rank
// drops to the largest that fits, at least 1.
void shape_hyper(const Dims& d, int64_t r, HyperParams& hp) {
  hp["r"] = static_cast<double>(std::max<int64_t>(1, std::min(r, d.d_in * d.d_out / (d.d_in + d.d_out))));
}

}  // namespace

const AdapterInfo& shira_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("shira", "SHIRA", "Y = X (W + ΔW)ᵀ + b, ΔW sparse: v (K) at K = r (d_in + d_out) fixed entries",
                                          {shira::forward<double>, shira::backward<double>},
                                          {shira::forward<float>, shira::backward<float>});
    a.hyper = {{"r", 32, HyperParamSpec::Kind::integer, "sets the number of trainable entries K = r (d_in + d_out)"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    a.tensors.push_back(positions_spec("shira_indices", entries, "shira_indices.{adapter}",
                                       "K distinct entries of a random mask (torch.randperm with the config's "
                                       "random_seed), row-major order"));
    a.tensors.push_back({"shira_weight", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{entries(d, hp)}; },
                         "shira_weight.{adapter}", "zeros", "", {}});
    // The torch backend: the base GEMM on the merged weight (a copy of W plus K scattered values); the backward adds
    // the sampled products dv_k = ⟨dY[:, p], X[:, q]⟩, 2 N values read and N multiply-adds per entry.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, 0);
      c.flops += double(entries(d, hp));
      c.bytes += 4.0 * (2.0 * d.d_in * d.d_out + 3.0 * entries(d, hp));
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::backward_cost(n, d, 0);
      c.flops += 2.0 * n * entries(d, hp);
      c.bytes += 4.0 * (2.0 * d.d_in * d.d_out + 2.0 * n * entries(d, hp));
      return c;
    };
    a.notes = {"identity at init (v = 0; init_weights=True, the default; False draws N(0, 1)); PEFT's layer scale (set_scale, 1 in training) is not a config field and "
               "is read as 1: from_peft refuses a layer whose scale was changed",
               "generic checks lower r to the largest whose r (d_in + d_out) entries fit in the weight"};
    return a;
  }();
  return info;
}

}  // namespace gg
