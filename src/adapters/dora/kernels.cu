// DoRA's fused kernels.
//
// column_dot_scale — the backward's entry, one pass over dY and P instead of three:
//   reference: for n, i:  dP[n,i] = dY[n,i]·g[i];   colsum[i] += dY[n,i]·P[n,i]
// row_norms_project — the weight norm without forming V = W + s·B·A (d_out × d_in), one pass over W:
//   reference: for i, k:  sumsq[i] += W[i,k]²;   for j < r: WA[i,j] += W[i,k]·A[j,k]
#include <algorithm>
#include <tuple>

#include "core/cuda/common.cuh"

namespace gg::cuda {
namespace {

// ---- column_dot_scale: blocks of (32 lanes over column vectors) × (8 rows in flight); a fixed row partition.
constexpr int kLanes = 32;
constexpr int kRows = 8;
constexpr int64_t kMaxRowChunks = 264;

struct ColumnGrid {
  int col_tiles, row_chunks;
  int64_t rows_per_chunk;
};

ColumnGrid column_grid(int64_t n, int64_t d, int vec) {
  const int64_t tile = int64_t{kLanes} * vec;
  const int col_tiles = static_cast<int>((d + tile - 1) / tile);
  // Enough blocks to fill a large GPU about twice (≈ 264 on an H100/H200), each chunk at least kRows rows; the
  // partition depends only on (n, d, vec), never on the device, so results are reproducible across runs.
  const int64_t want = std::max<int64_t>(1, kMaxRowChunks / col_tiles);
  const int row_chunks = static_cast<int>(std::clamp<int64_t>(want, 1, std::max<int64_t>(1, n / kRows)));
  return {col_tiles, row_chunks, (n + row_chunks - 1) / row_chunks};
}

template <class T, int VEC>
__global__ void column_dot_scale_kernel(const T* __restrict__ dY, const T* __restrict__ P,
                                        const acc_t<T>* __restrict__ g, T* __restrict__ dP,
                                        acc_t<T>* __restrict__ partial, int64_t n, int64_t d, int64_t rows_per_chunk) {
  __shared__ acc_t<T> red[kRows][kLanes * VEC];
  const int64_t col = (static_cast<int64_t>(blockIdx.x) * kLanes + threadIdx.x) * VEC;
  const int64_t row0 = blockIdx.y * rows_per_chunk;
  const int64_t row1 = min(n, row0 + rows_per_chunk);
  const bool active = col < d;  // d is a multiple of VEC whenever VEC > 1
  acc_t<T> acc[VEC];
  acc_t<T> gv[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    acc[k] = 0;
    gv[k] = active ? g[col + k] : acc_t<T>(0);
  }
  if (active) {
#pragma unroll 4
    for (int64_t i = row0 + threadIdx.y; i < row1; i += kRows) {
      const Vec<T, VEC> a = load_vec<T, VEC>(dY + i * d + col);
      const Vec<T, VEC> p = load_vec<T, VEC>(P + i * d + col);
      Vec<T, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const acc_t<T> av = to_acc(a.v[k]);
        acc[k] += av * to_acc(p.v[k]);
        o.v[k] = from_acc<T>(av * gv[k]);
      }
      store_vec<T, VEC>(dP + i * d + col, o);
    }
  }
#pragma unroll
  for (int k = 0; k < VEC; ++k) red[threadIdx.y][threadIdx.x * VEC + k] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && active) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      acc_t<T> s = 0;
      for (int y = 0; y < kRows; ++y) s += red[y][threadIdx.x * VEC + k];
      partial[blockIdx.y * d + col + k] = s;
    }
  }
}

template <class T>
int column_vec(int64_t d, const void* a, const void* b, const void* c) {
  constexpr int wide = 16 / sizeof(T);
  return d % wide == 0 && aligned16(a) && aligned16(b) && aligned16(c) ? wide : 1;
}

// ---- row_norms_project: 8 warps per block, 2 rows per warp; A staged through shared memory in column chunks.
constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 2;

template <class T, int R>
__host__ __device__ constexpr int chunk_cols() {
  return 32768 / (R * sizeof(T)) < 256 ? static_cast<int>(32768 / (R * sizeof(T))) : 256;  // ≤ 32 KB of shared memory
}

template <class T, int R>
__global__ void __launch_bounds__(kWarps * 32) row_norms_project_kernel(const T* __restrict__ W, const T* __restrict__ A,
                                                                         acc_t<T>* __restrict__ sumsq,
                                                                         acc_t<T>* __restrict__ WA, int64_t d_out,
                                                                         int64_t d_in, int r) {
  constexpr int kChunk = chunk_cols<T, R>();
  __shared__ T As[R][kChunk];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row_base = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * kRowsPerWarp;
  acc_t<T> acc[kRowsPerWarp][R];
  acc_t<T> sq[kRowsPerWarp];
#pragma unroll
  for (int q = 0; q < kRowsPerWarp; ++q) {
    sq[q] = 0;
#pragma unroll
    for (int j = 0; j < R; ++j) acc[q][j] = 0;
  }
  for (int64_t k0 = 0; k0 < d_in; k0 += kChunk) {
    __syncthreads();  // the previous chunk is no longer read
    for (int e = threadIdx.x; e < R * kChunk; e += kWarps * 32) {
      const int j = e / kChunk, kk = e % kChunk;
      As[j][kk] = (j < r && k0 + kk < d_in) ? A[j * d_in + k0 + kk] : from_acc<T>(0);
    }
    __syncthreads();
    for (int kk = lane; kk < kChunk && k0 + kk < d_in; kk += 32) {
#pragma unroll
      for (int q = 0; q < kRowsPerWarp; ++q) {
        const int64_t row = row_base + q;
        if (row >= d_out) continue;
        const acc_t<T> w = to_acc(W[row * d_in + k0 + kk]);
        sq[q] += w * w;
#pragma unroll
        for (int j = 0; j < R; ++j) acc[q][j] += w * to_acc(As[j][kk]);  // rows j >= r are zeros
      }
    }
  }
#pragma unroll
  for (int q = 0; q < kRowsPerWarp; ++q) {
    const int64_t row = row_base + q;
    acc_t<T> s = sq[q];
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0 && row < d_out) sumsq[row] = s;
#pragma unroll
    for (int j = 0; j < R; ++j) {
      acc_t<T> v = acc[q][j];
      for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0 && row < d_out && j < r) WA[row * r + j] = v;
    }
  }
}

template <class T, int R>
void launch_row_norms(const void* W, const void* A, void* sumsq, void* WA, int64_t d_out, int64_t d_in, int r,
                      cudaStream_t s) {
  using Acc = acc_t<T>;
  const int64_t rows_per_block = int64_t{kWarps} * kRowsPerWarp;
  const auto blocks = static_cast<unsigned>((d_out + rows_per_block - 1) / rows_per_block);
  row_norms_project_kernel<T, R><<<blocks, kWarps * 32, 0, s>>>(static_cast<const T*>(W), static_cast<const T*>(A),
                                                                static_cast<Acc*>(sumsq), static_cast<Acc*>(WA), d_out,
                                                                d_in, r);
  check_launch("row_norms_project");
}

}  // namespace

size_t column_dot_scale_workspace(DType dtype, int64_t n, int64_t d) {
  // The most row chunks any vector width can ask for (column_grid never exceeds kMaxRowChunks), so the caller need
  // not know which width the pointers' alignment will select.
  const int64_t chunks = std::clamp<int64_t>(kMaxRowChunks, 1, std::max<int64_t>(1, n / kRows));
  return static_cast<size_t>(chunks) * static_cast<size_t>(d) * acc_size(dtype);
}

void column_dot_scale(DType dtype, const void* dY, const void* P, const void* g, void* dP, void* colsum, int64_t n,
                      int64_t d, void* workspace, void* stream) {
  if (n < 0 || d <= 0) throw std::runtime_error("column_dot_scale: need n >= 0 and d > 0");
  const auto s = static_cast<cudaStream_t>(stream);
  if (n == 0) return zero_sums(colsum, d, acc_size(dtype), s, "column_dot_scale");  // an empty batch: no rows to scale
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int vec = column_vec<T>(d, dY, P, dP);
    const ColumnGrid grid = column_grid(n, d, vec);
    const dim3 blocks(grid.col_tiles, grid.row_chunks), threads(kLanes, kRows);
    auto args = std::make_tuple(static_cast<const T*>(dY), static_cast<const T*>(P), static_cast<const A*>(g),
                                static_cast<T*>(dP), static_cast<A*>(workspace), n, d, grid.rows_per_chunk);
    constexpr int wide = 16 / sizeof(T);
    if (vec == wide)
      std::apply([&](auto... a) { column_dot_scale_kernel<T, wide><<<blocks, threads, 0, s>>>(a...); }, args);
    else
      std::apply([&](auto... a) { column_dot_scale_kernel<T, 1><<<blocks, threads, 0, s>>>(a...); }, args);
    check_launch("column_dot_scale");
    sum_partials(static_cast<const A*>(workspace), static_cast<A*>(colsum), grid.row_chunks, d, s,
                 "column_dot_scale (sum)");
  });
}

int64_t row_norms_max_rank() { return 64; }

void row_norms_project(DType dtype, const void* W, const void* A, void* sumsq, void* WA, int64_t d_out, int64_t d_in,
                       int64_t r, void* stream) {
  if (d_out <= 0 || d_in <= 0 || r <= 0 || r > row_norms_max_rank())
    throw std::runtime_error("row_norms_project: need positive sizes and 1 <= r <= 64, got r = " + std::to_string(r));
  const auto s = static_cast<cudaStream_t>(stream);
  const int ri = static_cast<int>(r);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (r <= 8) launch_row_norms<T, 8>(W, A, sumsq, WA, d_out, d_in, ri, s);
    else if (r <= 16) launch_row_norms<T, 16>(W, A, sumsq, WA, d_out, d_in, ri, s);
    else if (r <= 32) launch_row_norms<T, 32>(W, A, sumsq, WA, d_out, d_in, ri, s);
    else launch_row_norms<T, 64>(W, A, sumsq, WA, d_out, d_in, ri, s);
  });
}

}  // namespace gg::cuda
