// Registry entry for `dora` (PEFT LoraConfig(use_dora=True), nn.Linear).
#include "adapters/dora/eigen.hpp"

namespace gg {

const AdapterInfo& dora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("dora", "LORA", "Y = (m/‖W + s·BA‖_rows) ⊙ (X Wᵀ + s·(X Aᵀ) Bᵀ) + b",
                                          {dora::forward<double>, dora::backward<double>},
                                          {dora::forward<float>, dora::backward<float>});
    a.hyper.push_back({"exact_gradient", 0, HyperParamSpec::Kind::flag,
                       "0: PEFT's semantics (weight norm detached, paper §4.3); 1: differentiate the norm too"});
    a.tensors.push_back(lowrank::lora_A("lora_B is zero at init, so the low-rank path passes no gradient to A"));
    a.tensors.push_back(lowrank::lora_B());
    a.tensors.push_back({"lora_magnitude_vector", TensorRole::trainable,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; },
                         "lora_magnitude_vector.{adapter}.weight", "row norms of W (so the layer is the base at init)",
                         "", {}});
    a.detached.push_back({"weight_norm", TensorRole::frozen,
                          [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; }, "",
                          "‖W + s·BA‖ per row, detached (PEFT's DoraLinearLayer)", "",
                          [](const HyperParams& hp) { return hp.at("exact_gradient") == 0.0; }});
    a.derive_detached = [](TensorMap<double>& t, const HyperParams& hp) {
      if (hp.at("exact_gradient") != 0.0) return;
      t["weight_norm"] = dora::adapted_weight(t, lowrank::scaling(hp)).rowwise().norm().transpose();
    };
    // The row norm of V = W + s·BA costs a d_out×d_in pass plus the rank-r product forming BA.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, lowrank::rank(hp), 2.0);
      c.flops += 2.0 * d.d_out * d.d_in * (lowrank::rank(hp) + 1);
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::backward_cost(n, d, lowrank::rank(hp), 3.0);
      c.flops += 2.0 * d.d_out * d.d_in * (lowrank::rank(hp) + 1);
      return c;
    };
    a.notes = {"exact_gradient=0 (default) checks PEFT's gradient, in which the weight norm is a constant; "
               "exact_gradient=1 checks the true gradient of the same forward"};
    a.backends.push_back(linear::cuda_support());
    a.layer_types = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "Conv1D"};
    // PEFT's lora_A reads every input channel of a grouped convolution and lora_B is grouped: gradguard expands the
    // base weight and lora_B block-diagonally (gradguard/layers.py GROUP_EXPANDED)
    a.grouped_convolutions = true;
    return a;
  }();
  return info;
}

}  // namespace gg
