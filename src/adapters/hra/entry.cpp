// Registry entry for `hra` (PEFT HRAConfig, HRALinear around nn.Linear, without Gram-Schmidt).
#include "adapters/hra/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

const AdapterInfo& hra_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("hra", "HRA", "Y = X (W H)ᵀ + b, H = Π (I − 2ûᵢûᵢᵀ), ûᵢ = uᵢ/‖uᵢ‖",
                                          {hra::forward<double>, hra::backward<double>},
                                          {hra::forward<float>, hra::backward<float>});
    a.hyper = {{"r", 8, HyperParamSpec::Kind::integer, "number of Householder reflections"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    // More reflections than input dims add nothing, and PEFT's init needs them in pairs.
    a.validate = [](const Dims& d, const HyperParams& hp) {
      lowrank::validate_rank(d, hp, "r", lowrank::RankBound::d_in);
    };
    a.tensors.push_back({"hra_u", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{d.d_in, lowrank::rank(hp)}; },
                         "hra_u.{adapter}", "paired: kaiming_uniform on r/2 columns, each repeated twice (H = I for even r)",
                         "", {}});
    // The torch path: r reflections of X (a dot and an axpy per row each), forward and twice backward.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, 0);
      c.flops += 4.0 * n * d.d_in * lowrank::rank(hp);
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::backward_cost(n, d, 0);
      c.flops += 16.0 * n * d.d_in * lowrank::rank(hp);
      return c;
    };
    a.notes = {"the torch backend never forms H or W H: it reflects X by each ûᵢ (X Hᵀ = X R_{r−1} ⋯ R₀) and the "
               "backward undoes each reflection (Rᵢ is its own inverse) instead of storing r intermediates",
               "PEFT's init pairs the columns of hra_u, so H = I for even r (identity at init) but not for odd r",
               "apply_GS (Gram-Schmidt) is not registered yet"};
    a.layer_types = {"Linear", "Conv2d"};
    return a;
  }();
  return info;
}

}  // namespace gg
