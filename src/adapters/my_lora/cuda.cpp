// my_lora on the cuda backend: the per-rank gate folds into c = s·g (forward: into B̂; backward: the fused gate kernel).
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kMyLora{"lora_A", "lora_B", true, true, GatedLowRank::Gate::per_rank, "lora_gate", false};
const TorchImpl& my_lora_cuda() { return gated_lowrank_impl<kMyLora>(); }

}  // namespace gg
