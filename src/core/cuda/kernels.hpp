// Host-callable launchers of gradguard's own CUDA kernels. Plain C++: no CUDA or torch headers, so the LibTorch side
// (g++) and the kernel tests (nvcc, no torch) share one interface. Pointers are device pointers; matrices are
// row-major and dense. "acc" is the accumulation type: double for DType::f64, float for every other dtype; every
// reduction is deterministic (a fixed partition summed in a fixed order: no atomics), so repeated runs are bitwise
// equal. Each launcher throws std::runtime_error naming the kernel on a CUDA error.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gg::cuda {

enum class DType { f32, f64, f16, bf16 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);
size_t acc_size(DType t);  // sizeof(double) for f64, sizeof(float) otherwise

// Number of visible CUDA devices (0 when there is none or the driver is missing); `why` gets the driver's reason.
int device_count(const char** why = nullptr);

// The gate step of the gated low-rank adapters (src/core/cuda/gated_lowrank.hpp: weight_lora, my_lora, kasa,
// adalora, vera): with U = dY·B̃ (N, r) and S = X·Ãᵀ (N, r),
//   dS = U ⊙ c (c per column, acc[r]),   colsum[j] = Σ_n U[n,j]·S[n,j] (acc[r]),
// in one pass over U and S. Workspace: gated_rank_grad_workspace(dtype, n, r) bytes.
size_t gated_rank_grad_workspace(DType dtype, int64_t n, int64_t r);
void gated_rank_grad(DType dtype, const void* U, const void* S, const void* c, void* dS, void* colsum, int64_t n,
                     int64_t r, void* workspace, void* stream);

// DoRA's backward entry (IA3's too: the same column scale and dot): with dY (N, d) and P = X·Vᵀ (N, d) (V the
// adapted weight) and g = m/‖V‖ (acc[d]),
//   dP = dY ⊙ g (per column),   colsum[i] = Σ_n dY[n,i]·P[n,i] (acc[d]),
// in one pass over dY and P instead of three. Workspace: column_dot_scale_workspace(dtype, n, d) bytes.
size_t column_dot_scale_workspace(DType dtype, int64_t n, int64_t d);
void column_dot_scale(DType dtype, const void* dY, const void* P, const void* g, void* dP, void* colsum, int64_t n,
                      int64_t d, void* workspace, void* stream);

// DoRA's weight norm without forming V = W + s·B·A: one pass over W (d_out, d_in) gives
//   sumsq[i] = ‖W_i‖² (acc[d_out])   and   WA[i, j] = W_i · A_j (acc[d_out × r]),  A (r, d_in),
// from which ‖V_i‖² = sumsq_i + 2s·B_i·WA_i + s²·B_i (A Aᵀ) B_iᵀ. r ≤ row_norms_max_rank().
int64_t row_norms_max_rank();
void row_norms_project(DType dtype, const void* W, const void* A, void* sumsq, void* WA, int64_t d_out, int64_t d_in,
                       int64_t r, void* stream);

}  // namespace gg::cuda
