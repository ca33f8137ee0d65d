// The frozen base layer every nn.Linear adapter wraps, declared once: W (d_out, d_in) and b (d_out) under PEFT's
// base_layer.* keys. Shared by the LoRA family (core/lowrank.hpp) and by adapters outside it (IA3).
#pragma once
#include <vector>

#include "core/registry.hpp"

namespace gg::linear {

// Base layer tensors, frozen: W (d_out, d_in) and b (d_out).
inline std::vector<TensorSpec> base_tensors() {
  return {
      {"weight", TensorRole::frozen, [](const Dims& d, const HyperParams&) { return Shape{d.d_out, d.d_in}; },
       "base_layer.weight", "the pretrained weight", "", {}},
      {"bias", TensorRole::frozen, [](const Dims& d, const HyperParams&) { return Shape{d.d_out}; },
       "base_layer.bias", "the pretrained bias", "", {}},
  };
}

}  // namespace gg::linear
