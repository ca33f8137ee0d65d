// dtype helpers and device discovery for the kernel launchers.
#include "core/cuda/common.cuh"

namespace gg::cuda {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16:
    case DType::bf16: return 2;
  }
  return 0;
}

size_t acc_size(DType t) { return t == DType::f64 ? sizeof(double) : sizeof(float); }

int device_count(const char** why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky "no device" error so later calls are not blamed for it
    return 0;
  }
  if (why) *why = n ? "" : "no CUDA device visible";
  return n;
}

}  // namespace gg::cuda
