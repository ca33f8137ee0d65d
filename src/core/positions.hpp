// The declaration every adapter with a fixed table of weight-grid entries shares (FourierFT, WaveFT, SHiRA): a frozen
// (2, n) TensorKind::positions tensor that PEFT keeps in a plain dict on the layer, outside its state_dict.
#pragma once
#include <functional>
#include <string>

#include "core/registry.hpp"

namespace gg {

inline TensorSpec positions_spec(std::string name, std::function<int64_t(const Dims&, const HyperParams&)> count,
                                 std::string peft_key, const std::string& peft_init) {
  TensorSpec spec{std::move(name), TensorRole::frozen,
                  [count](const Dims& d, const HyperParams& hp) { return Shape{2, count(d, hp)}; }, std::move(peft_key),
                  peft_init + "; a plain dict on the layer, not in its state_dict", "", {}};
  spec.kind = TensorKind::positions;
  return spec;
}

}  // namespace gg
