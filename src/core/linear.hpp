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

// Y = X (W + ΔW)ᵀ + b: the forward of every reference that forms a dense update of the base weight.
template <class T>
Mat<T> forward_with_delta(const Mat<T>& x, const TensorMap<T>& t, const Mat<T>& delta) {
  Mat<T> y = x * (t.at("weight") + delta).transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

// The cuda backend's support line, for any entry with fused kernels (src/adapters/<name>/cuda.cpp).
inline BackendSupport cuda_support() {
  return {"cuda", {"float64", "float32", "bfloat16", "float16"}, "cuBLAS GEMMs + gradguard's fused kernels; needs a CUDA device"};
}

}  // namespace gg::linear
