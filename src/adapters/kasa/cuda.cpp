// KaSA on the cuda backend: the per-rank lora_diag folds into c = s·d exactly as my_lora's gate does.
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kKasa{"lora_A", "lora_B", true, true, GatedLowRank::Gate::per_rank, "lora_diag", false};
const TorchImpl& kasa_cuda() { return gated_lowrank_impl<kKasa>(); }

}  // namespace gg
