// A CPU stand-in for the kernel launchers of src/core/cuda/kernels.hpp, computing their float64 references
// (src/core/cuda/reference.hpp) on host memory in float32/float64. Linked only into gg_cuda_host_logic_tests, which
// runs the cuda backend's host code (GEMM composition, layouts, gates, DoRA's rank-r norm algebra) on CPU tensors,
// so its maths is checked on every CI run, not only on the days a GPU is lent.
#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/cuda/kernels.hpp"
#include "core/cuda/reference.hpp"

namespace gg::cuda {
namespace {

std::vector<double> read(DType t, const void* p, size_t n) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = t == DType::f64 ? static_cast<const double*>(p)[i] : static_cast<const float*>(p)[i];
  return v;
}

void write(DType t, void* p, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::f64) static_cast<double*>(p)[i] = v[i];
    else static_cast<float*>(p)[i] = static_cast<float>(v[i]);
  }
}

DType acc(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

void host_only(DType t) {
  if (t != DType::f32 && t != DType::f64) throw std::runtime_error("host shim: float32/float64 only");
}

}  // namespace

const char* dtype_name(DType t) { return t == DType::f64 ? "float64" : "float32"; }
size_t dtype_size(DType t) { return t == DType::f64 ? 8 : 4; }
size_t acc_size(DType t) { return t == DType::f64 ? 8 : 4; }
int device_count(const char** why) {
  if (why) *why = "";
  return 1;
}
void* stream() { return nullptr; }

size_t gated_rank_grad_workspace(DType, int64_t, int64_t) { return 1; }
void gated_rank_grad(DType t, const void* U, const void* S, const void* c, void* dS, void* colsum, int64_t n, int64_t r,
                     void*, void*) {
  host_only(t);
  const auto out = reference::gated_rank_grad(read(t, U, n * r), read(t, S, n * r), read(acc(t), c, r), n, r);
  write(t, dS, out.scaled);
  write(acc(t), colsum, out.sum);
}

size_t column_dot_scale_workspace(DType, int64_t, int64_t) { return 1; }
void column_dot_scale(DType t, const void* dY, const void* P, const void* g, void* dP, void* colsum, int64_t n,
                      int64_t d, void*, void*) {
  host_only(t);
  const auto out = reference::column_dot_scale(read(t, dY, n * d), read(t, P, n * d), read(acc(t), g, d), n, d);
  write(t, dP, out.scaled);
  write(acc(t), colsum, out.sum);
}

int64_t row_norms_max_rank() { return 64; }
void row_norms_project(DType t, const void* W, const void* A, void* sumsq, void* WA, int64_t d_out, int64_t d_in,
                       int64_t r, void*) {
  host_only(t);
  const auto out = reference::row_norms_project(read(t, W, d_out * d_in), read(t, A, r * d_in), d_out, d_in, r);
  write(acc(t), sumsq, out.sumsq);
  write(acc(t), WA, out.WA);
}

}  // namespace gg::cuda
