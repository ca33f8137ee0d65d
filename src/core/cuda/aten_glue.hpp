// Glue between ATen tensors on a CUDA device and the raw-pointer kernel launchers of kernels.hpp: dtype mapping,
// the accumulation dtype, the current stream, and workspaces from the caching allocator. Host code (g++) only.
#pragma once
#include <ATen/ATen.h>

#include "core/cuda/kernels.hpp"
#include "core/errors.hpp"

namespace gg::cuda {

inline DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    default: throw InputError("dtype", "float64, float32, bfloat16 or float16 on the cuda backend", c10::toString(t.scalar_type()));
  }
}

// float64 stays float64; every other dtype accumulates (and keeps norms, gates and reductions) in float32.
inline at::ScalarType acc_dtype(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// The current CUDA stream of ATen (src/core/cuda/stream.cpp; its own file so that the CPU test of the host logic
// can stand in for it).
void* stream();

inline at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

}  // namespace gg::cuda
