// KaSA's reference is my_lora's (LoRA with a per-rank gate), with the gate under KaSA's name.
#pragma once
#include "adapters/my_lora/eigen.hpp"

namespace gg::kasa {
inline constexpr char kDiag[] = "lora_diag";
}  // namespace gg::kasa
