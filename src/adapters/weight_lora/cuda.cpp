// weight_lora on the cuda backend: A is (d_in, r) and B (r, d_out) (the fork's layout, read as transposed views);
// the scalar gate folds into c = s·w.
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kWeightLora{"weight_lora_A", "weight_lora_B", false, false, GatedLowRank::Gate::scalar,
                                          "weight_lora_w", false};
const TorchImpl& weight_lora_cuda() { return gated_lowrank_impl<kWeightLora>(); }

}  // namespace gg
