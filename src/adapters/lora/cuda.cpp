// LoRA on the cuda backend: the generic gated low-rank implementation with no gate (c = s).
#include "core/cuda/gated_lowrank.hpp"

namespace gg {

static constexpr GatedLowRank kLora{"lora_A", "lora_B", true, true, GatedLowRank::Gate::none, nullptr, true};
const TorchImpl& lora_cuda() { return gated_lowrank_impl<kLora>(); }

}  // namespace gg
