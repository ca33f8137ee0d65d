// Registry entry for `miss` (PEFT MissConfig, MissLinear around nn.Linear; the default mode — "bat" and "mini" are
// other layers and not registered yet).
#include "adapters/miss/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

const AdapterInfo& miss_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("miss", "MISS", "Y = X Wᵀ + b + fold_r(X) D, fold_r sums X's blocks of r columns",
                                          {miss::forward<double>, miss::backward<double>},
                                          {miss::forward<float>, miss::backward<float>});
    a.hyper = {{"r", 64, HyperParamSpec::Kind::integer, "block width: X is cut into blocks of r columns and summed"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    // PEFT's own bound: the blocks of r columns must fit in d_in.
    a.validate = [](const Dims& d, const HyperParams& hp) {
      lowrank::validate_rank(d, hp, "r", lowrank::RankBound::d_in);
    };
    a.tensors.push_back({"miss_block", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{lowrank::rank(hp), d.d_out}; },
                         "miss_block.{adapter}", "zeros", "", {}});
    // fold: N·d_in additions; F D: a thin GEMM of width r.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, lowrank::rank(hp));
      c.flops -= 2.0 * n * lowrank::rank(hp) * d.d_in - double(n) * d.d_in;
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return lowrank::backward_cost(n, d, lowrank::rank(hp)); };
    a.notes = {"MiSS's default mode: a shared r × d_out block applied to the sum of X's r-column blocks (X zero-padded "
               "to a multiple of r), identity at init (miss_block = 0); PEFT's 'bat' and 'mini' modes are not registered"};
    return a;
  }();
  return info;
}

}  // namespace gg
