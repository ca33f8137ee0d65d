// Registry entry for `lora` (PEFT LoraConfig, nn.Linear), with rsLoRA and lora_bias.
#include "adapters/lora/eigen.hpp"

namespace gg {

const AdapterInfo& lora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("lora", "LORA", "Y = X Wᵀ + b + s·(X Aᵀ) Bᵀ, s = alpha/r (alpha/sqrt(r) with use_rslora)",
                                          {lora::forward<double>, lora::backward<double>},
                                          {lora::forward<float>, lora::backward<float>});
    a.hyper.push_back({"lora_bias", 0, HyperParamSpec::Kind::flag, "trainable bias on lora_B (scaled by s)"});
    a.tensors.push_back(lowrank::lora_A("lora_B is zero at init, so dL/dA = s·Bᵀ(...) = 0"));
    a.tensors.push_back(lowrank::lora_B());
    a.tensors.push_back({"lora_B_bias", TensorRole::trainable,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; }, "lora_B.{adapter}.bias",
                         "zeros", "", [](const HyperParams& hp) { return hp.at("lora_bias") != 0.0; }});
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
