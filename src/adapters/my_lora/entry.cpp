// Registry entry for `my_lora`: LoRA plus a per-rank gate; PEFT side in gradguard.peft (MyLoraConfig).
#include "adapters/my_lora/eigen.hpp"

namespace gg {

const AdapterInfo& my_lora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("my_lora", "MY_LORA", "Y = X Wᵀ + b + s·((X Aᵀ) ⊙ g) Bᵀ, g per rank",
                                          {my_lora::forward<double>, my_lora::backward<double>},
                                          {my_lora::forward<float>, my_lora::backward<float>});
    a.tensors.push_back(lowrank::lora_A("lora_B is zero at init, so the rank-r path passes no gradient to A"));
    a.tensors.push_back(lowrank::lora_B());
    a.tensors.push_back({"lora_gate", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{lowrank::rank(hp)}; },
                         "lora_gate.{adapter}", "ones",
                         "lora_B is zero at init, so dL/dg = Σ (s·dY B) ⊙ (X Aᵀ) = 0", {}});
    a.backends.push_back(linear::cuda_support());
    return a;
  }();
  return info;
}

}  // namespace gg
