// Registry entry for `lora` (PEFT LoraConfig, nn.Linear), with rsLoRA and lora_bias.
#include "adapters/lora/eigen.hpp"

namespace gg {

const AdapterInfo& lora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a;
    a.name = "lora";
    a.peft_type = "LORA";
    a.summary = "Y = X Wᵀ + b + s·(X Aᵀ) Bᵀ, s = alpha/r (alpha/sqrt(r) with use_rslora)";
    a.hyper = lowrank::hyper_params();
    a.hyper.push_back({"lora_bias", 0, HyperParamSpec::Kind::flag, "trainable bias on lora_B (scaled by s)"});
    a.tensors = lowrank::base_tensors();
    a.tensors.push_back({"lora_A", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{lowrank::rank(hp), d.d_in}; },
                         "lora_A.{adapter}.weight", "kaiming_uniform(a=sqrt(5))",
                         "lora_B is zero at init, so dL/dA = s·Bᵀ(...) = 0", {}});
    a.tensors.push_back({"lora_B", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, lowrank::rank(hp)}; },
                         "lora_B.{adapter}.weight", "zeros", "", {}});
    a.tensors.push_back({"lora_B_bias", TensorRole::trainable,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; }, "lora_B.{adapter}.bias",
                         "zeros", "", [](const HyperParams& hp) { return hp.at("lora_bias") != 0.0; }});
    a.scaling = lowrank::scaling;
    a.validate = lowrank::validate;
    a.eigen64 = {lora::forward<double>, lora::backward<double>};
    a.eigen32 = {lora::forward<float>, lora::backward<float>};
    a.backends = {{"eigen", {"float64", "float32"}, ""}, {"torch", {"float64", "float32"}, ""}};
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return lowrank::forward_cost(n, d, hp); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return lowrank::backward_cost(n, d, hp); };
    return a;
  }();
  return info;
}

}  // namespace gg
