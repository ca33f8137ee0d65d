// Registry entry for `kasa` (PEFT LoraConfig(kasa_config=KasaConfig()), lora.Linear with KasaLinearVariant).
// The layer's maths is my_lora's with the per-rank gate named lora_diag; what makes KaSA KaSA happens once, at init:
// PEFT overwrites the base weight with its float32 SVD truncated by the r smallest singular components. The registry's
// `weight` is that truncated W (from_peft reads it off the layer; regenerating it would need PEFT's float32 LAPACK).
#include "adapters/kasa/eigen.hpp"

namespace gg {

const AdapterInfo& kasa_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "kasa", "LORA", "Y = X W_tᵀ + b + s·((X Aᵀ) ⊙ d) Bᵀ, W_t = W without its r smallest singular components",
        {my_lora::forward<double, kasa::kDiag>, my_lora::backward<double, kasa::kDiag>},
        {my_lora::forward<float, kasa::kDiag>, my_lora::backward<float, kasa::kDiag>});
    // PEFT's bound is strict: at least one singular component of W must survive the truncation.
    a.validate = [](const Dims& d, const HyperParams& hp) {
      lowrank::validate_rank(d, hp, "r");
      const int64_t max_rank = std::min(d.d_in, d.d_out) - 1;
      if (hp.at("r") > static_cast<double>(max_rank))
        throw InputError("r", "at most min(d_in, d_out) - 1 = " + std::to_string(max_rank) +
                                  " (KaSA keeps at least one singular component of W)",
                         std::to_string(static_cast<int64_t>(hp.at("r"))));
    };
    a.tensors[0].peft_init = "the base weight truncated once at init: float32 SVD, the r smallest components dropped";
    a.tensors.push_back(lowrank::lora_A("lora_B is zero at init, so the rank-r path passes no gradient to A"));
    a.tensors.push_back(lowrank::lora_B());
    a.tensors.push_back({kasa::kDiag, TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{lowrank::rank(hp)}; },
                         "lora_diag.{adapter}", "randn (in the base weight's dtype)",
                         "lora_B is zero at init, so dL/dd = Σ (s·dY B) ⊙ (X Aᵀ) = 0", {}});
    a.backends.push_back(linear::cuda_support());
    a.notes = {
        "PEFT type LORA with kasa_config set: KaSA is a LoRA variant, not a tuner of its own",
        "at init the layer equals its (truncated) base layer, not the model's original one: the truncation changes the "
        "model by the r smallest singular components of W, and neither disabling the adapter nor unmerging undoes it",
        "KasaConfig's beta and gamma weight an auxiliary loss (LoraModel._get_kasa_loss), a training extra outside the layer",
        "lora_bias is not modelled for KaSA; from_peft refuses such a layer",
    };
    return a;
  }();
  return info;
}

}  // namespace gg
