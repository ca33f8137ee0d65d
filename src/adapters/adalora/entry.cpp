// Registry entry for `adalora` (PEFT AdaLoraConfig, adalora SVDLinear around nn.Linear).
#include "adapters/adalora/eigen.hpp"

namespace gg {

const AdapterInfo& adalora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("adalora", "ADALORA",
                                          "Y = X Wᵀ + b + s·(X (A ⊙ E)ᵀ) Bᵀ, s = alpha/(init_r + 1e-5)",
                                          {adalora::forward<double>, adalora::backward<double>},
                                          {adalora::forward<float>, adalora::backward<float>});
    // AdaLoraModel builds each SVDLinear with r = config.init_r (AdaLoraConfig.r is ignored, with a warning) and
    // lora_alpha = config.lora_alpha (LoraConfig's default, 8); the layer stores the rank as r and as ranknum.
    a.hyper = {
        {"init_r", 12, HyperParamSpec::Kind::integer,
         "rank of lora_A/lora_E/lora_B (AdaLoraConfig.init_r; the layer's r and ranknum buffer)"},
        {"lora_alpha", 8, HyperParamSpec::Kind::real,
         "scaling = lora_alpha / (init_r + 1e-5); PEFT uses init_r in place of lora_alpha when lora_alpha <= 0"},
    };
    a.rank_param = "init_r";
    a.scaling = adalora::scaling;
    a.validate = [](const Dims& d, const HyperParams& hp) { lowrank::validate_rank(d, hp, "init_r"); };
    a.tensors.push_back(lowrank::lora_A("lora_E is zero at init, so dL/dA = (s·(dY B)ᵀ X) ⊙ E = 0", "lora_A.{adapter}",
                                        "normal(0, 0.02)", "init_r"));
    a.tensors.push_back({"lora_E", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{lowrank::rank(hp, "init_r"), 1}; },
                         "lora_E.{adapter}", "zeros", "", {}});
    a.tensors.push_back(lowrank::lora_B("lora_E is zero at init, so S = X (A ⊙ E)ᵀ = 0 and dL/dB = s·dYᵀ S = 0",
                                        "lora_B.{adapter}", "normal(0, 0.02)", "init_r"));
    // The rank-r path of LoRA plus forming A ⊙ E (and, backward, dA = dP ⊙ E and dE = Σ dP ⊙ A): r·d_in each.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r = static_cast<double>(lowrank::rank(hp, "init_r"));
      Cost c = lowrank::forward_cost(n, d, r);
      c.flops += r * d.d_in;
      c.bytes += 4.0 * r;
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r = static_cast<double>(lowrank::rank(hp, "init_r"));
      Cost c = lowrank::backward_cost(n, d, r);
      c.flops += 4.0 * r * d.d_in;
      c.bytes += 8.0 * r;
      return c;
    };
    a.notes = {
        "rank: init_r, the rank AdaLoraModel gives each layer (AdaLoraConfig.r is ignored by AdaLoRA). PEFT accepts "
        "init_r = 0 (an empty adapter); gradguard requires 1 <= init_r <= min(d_in, d_out)",
        "training extras outside the layer, not part of this op: the orthogonality regulariser that AdaLoraModel.forward "
        "adds to the loss (orth_reg_weight), and the rank allocator that masks lora_E by importance (target_r, tinit, "
        "tfinal, deltaT, beta1, beta2, total_step)",
        "a layer resized by a rank_pattern keeps ranknum at the initial rank while its tensors shrink; from_peft rejects "
        "such a layer rather than read a scaling that differs from alpha/(r + 1e-5)",
    };
    a.backends.push_back(linear::cuda_support());
    a.layer_types = {"Linear", "Conv2d", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
