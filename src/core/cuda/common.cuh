// Shared device-side pieces of gradguard's kernels: the accumulation type of each storage dtype, conversions, 16-byte
// vector access, the dtype switch and error checking. Included by .cu files only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cuda/kernels.hpp"

namespace gg::cuda {

// Accumulate in float for every storage type but double: bf16/fp16 sums of thousands of terms need the 24-bit
// mantissa, and float64 runs exist to be compared with the float64 reference at its own tolerance.
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using acc_t = typename AccOf<T>::type;

template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) { return static_cast<acc_t<T>>(v); }
template <> __device__ __forceinline__ float to_acc<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// VEC elements moved as one aligned access (16 bytes when VEC = 16 / sizeof(T)).
template <class T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

template <class T, int VEC>
__device__ __forceinline__ Vec<T, VEC> load_vec(const T* p) { return *reinterpret_cast<const Vec<T, VEC>*>(p); }
template <class T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, VEC>& x) { *reinterpret_cast<Vec<T, VEC>*>(p) = x; }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}
// After every launch: configuration errors surface here, not at some later call.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Calls f(T{}) with the storage type of `dtype`.
template <class F>
void dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    case DType::f16: f(__half{}); break;
    case DType::bf16: f(__nv_bfloat16{}); break;
  }
}

}  // namespace gg::cuda

namespace gg::cuda {

// Second stage of every deterministic reduction: out[j] = Σ_b partial[b, j], b in increasing order.
template <class A>
__global__ void sum_partials_kernel(const A* __restrict__ partial, A* __restrict__ out, int blocks, int64_t width) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= width) return;
  A s = 0;
  for (int b = 0; b < blocks; ++b) s += partial[b * width + j];
  out[j] = s;
}

template <class A>
void sum_partials(const A* partial, A* out, int blocks, int64_t width, cudaStream_t stream, const char* what) {
  const int threads = 256;
  sum_partials_kernel<A><<<static_cast<unsigned>((width + threads - 1) / threads), threads, 0, stream>>>(partial, out, blocks, width);
  check_launch(what);
}

// The column sums of an empty batch (n = 0): every one is 0, and there is nothing else to write.
inline void zero_sums(void* sums, int64_t width, size_t acc_bytes, cudaStream_t stream, const char* what) {
  check(cudaMemsetAsync(sums, 0, static_cast<size_t>(width) * acc_bytes, stream), what);
}

}  // namespace gg::cuda
