// Registry entry for `weight_lora`: the user's adapter (LoRA + learnable scalar gate), PEFT side in gradguard.peft.
#include "adapters/weight_lora/eigen.hpp"

namespace gg {

const AdapterInfo& weight_lora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("weight_lora", "WEIGHT_LORA", "Y = X Wᵀ + b + s·w·(X A) B, A (d_in, r), B (r, d_out), w scalar",
                                          {weight_lora::forward<double>, weight_lora::backward<double>},
                                          {weight_lora::forward<float>, weight_lora::backward<float>});
    a.tensors.push_back({"weight_lora_A", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{d.d_in, lowrank::rank(hp)}; },
                         "weight_lora_A.{adapter}", "kaiming_uniform(a=sqrt(5)) on the (d_in, r) tensor",
                         "weight_lora_B is zero at init, so the rank-r path passes no gradient to A", {}});
    a.tensors.push_back({"weight_lora_B", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{lowrank::rank(hp), d.d_out}; },
                         "weight_lora_B.{adapter}", "zeros", "", {}});
    a.tensors.push_back({"weight_lora_w", TensorRole::trainable,
                         [](const Dims&, const HyperParams&) { return Shape{}; }, "weight_lora_w.{adapter}", "ones",
                         "weight_lora_B is zero at init, so the gated term X A B is zero and so is dL/dw", {}});
    a.backends.push_back(linear::cuda_support());
    return a;
  }();
  return info;
}

}  // namespace gg
