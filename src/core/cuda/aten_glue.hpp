// Glue between ATen tensors on a CUDA device and the raw-pointer kernel launchers of kernels.hpp: dtype mapping,
// the accumulation dtype, the current stream, and workspaces from the caching allocator. Host code (g++) only.
#pragma once
#include <ATen/ATen.h>

#include <utility>

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

// The fused column_dot_scale on tensors: (a ⊙ g, Σ_n a ⊙ p) per column of a and p (N, d), in one pass; g is taken
// and the column sums are returned in the accumulation dtype (DoRA's and IA3's backward entry).
inline std::pair<at::Tensor, at::Tensor> scale_and_column_dot(const at::Tensor& a, const at::Tensor& p,
                                                              const at::Tensor& g) {
  const int64_t n = a.size(0), d = a.size(1);
  const at::Tensor ac = a.contiguous(), pc = p.contiguous(), gc = g.to(acc_dtype(a)).contiguous();
  at::Tensor scaled = at::empty_like(ac);
  at::Tensor colsum = at::empty({d}, gc.options());
  at::Tensor ws = workspace(column_dot_scale_workspace(dtype_of(ac), n, d), ac);
  column_dot_scale(dtype_of(ac), ac.data_ptr(), pc.data_ptr(), gc.data_ptr(), scaled.data_ptr(), colsum.data_ptr(), n,
                   d, ws.data_ptr(), stream());
  return {scaled, colsum};
}

}  // namespace gg::cuda
