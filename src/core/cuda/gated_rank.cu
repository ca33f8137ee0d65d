// The gate step of the gated low-rank adapters, fused: dS = U ⊙ c and colsum = Σ_n U ⊙ S in one pass over the
// (N, r) intermediates (weight_lora's scalar gate and my_lora's per-rank gate both reduce to a per-column c).
//
// Reference (what the kernel computes, in float64, beside it as the kernel tests use it):
//   for n, j:  dS[n,j] = U[n,j]·c[j];   colsum[j] += U[n,j]·S[n,j]
#include <algorithm>

#include "core/cuda/common.cuh"

namespace gg::cuda {
namespace {

constexpr int kTx = 32;  // columns (ranks) per pass of a block
constexpr int kTy = 8;   // rows in flight per block

// Fixed partition of the rows, so that the reduction order never depends on timing: at most 256 blocks of ≥ 64 rows.
int blocks_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + 63) / 64, 1, 256)); }

template <class T>
__global__ void gated_rank_grad_kernel(const T* __restrict__ U, const T* __restrict__ S, const acc_t<T>* __restrict__ c,
                                       T* __restrict__ dS, acc_t<T>* __restrict__ partial, int64_t n, int64_t r,
                                       int64_t rows_per_block) {
  __shared__ acc_t<T> red[kTy][kTx];
  const int64_t row0 = blockIdx.x * rows_per_block;
  const int64_t row1 = min(n, row0 + rows_per_block);
  for (int64_t j0 = 0; j0 < r; j0 += kTx) {
    const int64_t j = j0 + threadIdx.x;
    acc_t<T> acc = 0;
    if (j < r) {
      const acc_t<T> cj = c[j];
      for (int64_t i = row0 + threadIdx.y; i < row1; i += kTy) {
        const acc_t<T> u = to_acc(U[i * r + j]);
        acc += u * to_acc(S[i * r + j]);
        dS[i * r + j] = from_acc<T>(u * cj);
      }
    }
    red[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < r) {
      acc_t<T> s = 0;
      for (int y = 0; y < kTy; ++y) s += red[y][threadIdx.x];
      partial[blockIdx.x * r + j] = s;
    }
    __syncthreads();  // red is reused by the next column group
  }
}

}  // namespace

size_t gated_rank_grad_workspace(DType dtype, int64_t n, int64_t r) {
  return static_cast<size_t>(blocks_for(n)) * static_cast<size_t>(r) * acc_size(dtype);
}

void gated_rank_grad(DType dtype, const void* U, const void* S, const void* c, void* dS, void* colsum, int64_t n,
                     int64_t r, void* workspace, void* stream) {
  if (n < 0 || r <= 0) throw std::runtime_error("gated_rank_grad: need n >= 0 and r > 0");
  const auto s = static_cast<cudaStream_t>(stream);
  if (n == 0) return zero_sums(colsum, r, acc_size(dtype), s, "gated_rank_grad");  // an empty batch: no rows to scale
  const int blocks = blocks_for(n);
  const int64_t rows_per_block = (n + blocks - 1) / blocks;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    gated_rank_grad_kernel<T><<<blocks, dim3(kTx, kTy), 0, s>>>(
        static_cast<const T*>(U), static_cast<const T*>(S), static_cast<const A*>(c), static_cast<T*>(dS),
        static_cast<A*>(workspace), n, r, rows_per_block);
    check_launch("gated_rank_grad");
    sum_partials(static_cast<const A*>(workspace), static_cast<A*>(colsum), blocks, r, s, "gated_rank_grad (sum)");
  });
}

}  // namespace gg::cuda
