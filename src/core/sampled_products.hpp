// Entries of dYᵀX at fixed (row, col) pairs: what an adapter with fixed sparse entries needs for the gradient of its
// values (SHiRA's, WaveFT's coefficients' basis entries) without the dense dYᵀX.
#pragma once
#include <ATen/core/Tensor.h>

namespace gg {

// s_k = ⟨dy[:, rows_k], x[:, cols_k]⟩ for x (N, d_in), dy (N, d_out), rows/cols (K) int64. Gathers of feature-major
// copies of dy and x (2N values read per pair, in chunks that bound the temporaries) while K is a small share of
// d_out · d_in; the dense dYᵀX read at the pairs (one GEMM, as PEFT's autograd computes it) when the GEMM is cheaper.
at::Tensor sampled_products(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& rows, const at::Tensor& cols);

}  // namespace gg
