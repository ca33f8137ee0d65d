// AdaLoRA on the cuda backend: A ⊙ E scales A's rows, so X (A ⊙ E)ᵀ = S ⊙ E and E is a per-rank gate like my_lora's,
// with c = s·E for s = adalora::scaling (alpha, or init_r when alpha <= 0, over init_r + 1e-5). dE = s·Σ_n (dY B) ⊙ S is the fused gate kernel's column sum.
#include "adapters/adalora/eigen.hpp"
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kAdalora{.a = "lora_A",
                                       .b = "lora_B",
                                       .a_rank_major = true,
                                       .b_out_major = true,
                                       .gate = GatedLowRank::Gate::per_rank,
                                       .gate_name = "lora_E",
                                       .lora_bias = false,
                                       .scaling = adalora::scaling};
const TorchImpl& adalora_cuda() { return gated_lowrank_impl<kAdalora>(); }

}  // namespace gg
