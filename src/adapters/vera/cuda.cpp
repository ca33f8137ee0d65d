// VeRA on the cuda backend: λ_d is a per-rank gate (c = λ_d, no scaling) and λ_b the output gate, both folded into
// the frozen B̂ for the forward; dλ_b = Σ_j B̂ ⊙ dYᵀ(S ⊙ λ_d) comes from the (d_out, r) product that LoRA's dB uses,
// so no (N, d_out) intermediate is saved (the torch backend saves P = (S ⊙ λ_d) Bᵀ for it).
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kVera{.a = "vera_A",
                                    .b = "vera_B",
                                    .a_rank_major = true,
                                    .b_out_major = true,
                                    .gate = GatedLowRank::Gate::per_rank,
                                    .gate_name = "vera_lambda_d",
                                    .lora_bias = false,
                                    .out_gate = "vera_lambda_b",
                                    .factors_trainable = false,
                                    .scaling = [](const HyperParams&) { return 1.0; }};
const TorchImpl& vera_cuda() { return gated_lowrank_impl<kVera>(); }

}  // namespace gg
