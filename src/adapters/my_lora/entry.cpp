// Registry entry for `my_lora`: LoRA plus a per-rank gate; PEFT side in gradguard.peft (MyLoraConfig).
#include "adapters/my_lora/eigen.hpp"

namespace gg {

const AdapterInfo& my_lora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a;
    a.name = "my_lora";
    a.peft_type = "MY_LORA";
    a.summary = "Y = X Wᵀ + b + s·((X Aᵀ) ⊙ g) Bᵀ, g per rank";
    a.hyper = lowrank::hyper_params();
    a.tensors = lowrank::base_tensors();
    a.tensors.push_back({"lora_A", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{lowrank::rank(hp), d.d_in}; },
                         "lora_A.{adapter}.weight", "kaiming_uniform(a=sqrt(5))",
                         "lora_B is zero at init, so the rank-r path passes no gradient to A", {}});
    a.tensors.push_back({"lora_B", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, lowrank::rank(hp)}; },
                         "lora_B.{adapter}.weight", "zeros", "", {}});
    a.tensors.push_back({"lora_gate", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{lowrank::rank(hp)}; },
                         "lora_gate.{adapter}", "ones",
                         "lora_B is zero at init, so dL/dg = Σ (s·dY B) ⊙ (X Aᵀ) = 0", {}});
    a.scaling = lowrank::scaling;
    a.validate = lowrank::validate;
    a.eigen64 = {my_lora::forward<double>, my_lora::backward<double>};
    a.eigen32 = {my_lora::forward<float>, my_lora::backward<float>};
    a.backends = {{"eigen", {"float64", "float32"}, ""}, {"torch", {"float64", "float32"}, ""}};
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return lowrank::forward_cost(n, d, hp); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return lowrank::backward_cost(n, d, hp); };
    return a;
  }();
  return info;
}

}  // namespace gg
