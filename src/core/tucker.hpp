// The Tucker form of a convolution's weight factor (PEFT's use_effective_conv2d for LoHa and LoKr, LyCORIS'
// make_weight_cp): a core over the kernel positions between two mode factors,
//   M[p, q, k] = Σ_ij core[i, j, k] · a[i, p] · b[j, q]        core (r, r, K), a (r, P), b (r, Q)
// i.e. per kernel position k, M_k = aᵀ C_k b with C_k = core[:, :, k] (r × r). On the lowered Linear the weight's
// columns are channel-major (q·K + k), so M is returned as (P, Q·K) and the core is stored as (r, r·K), PEFT's
// (r, r, *kernel) flattened. Written once here for both adapters; the Eigen reference is plain loops over k.
// Backward, per k, with dM_k the (P, Q) slice of dM:
//   dC_k = a dM_k bᵀ (r, r);   da += C_k b dM_kᵀ (r, P);   db += C_kᵀ a dM_k (r, Q)
#pragma once
#include "core/tensor.hpp"

namespace gg::tucker {

template <class T>
Mat<T> core_slice(const Mat<T>& core, int64_t k, int64_t K) {  // C_k (r, r)
  Mat<T> c(core.rows(), core.cols() / K);
  for (int64_t j = 0; j < c.cols(); ++j) c.col(j) = core.col(j * K + k);
  return c;
}

template <class T>
Mat<T> rebuild(const Mat<T>& core, const Mat<T>& a, const Mat<T>& b, int64_t K) {
  Mat<T> M(a.cols(), b.cols() * K);  // (P, Q·K)
  for (int64_t k = 0; k < K; ++k) {
    const Mat<T> Mk = a.transpose() * core_slice(core, k, K) * b;  // (P, Q)
    for (int64_t q = 0; q < b.cols(); ++q) M.col(q * K + k) = Mk.col(q);
  }
  return M;
}

template <class T>
struct Grads {
  Mat<T> dcore, da, db;
};

template <class T>
Grads<T> backward(const Mat<T>& dM, const Mat<T>& core, const Mat<T>& a, const Mat<T>& b, int64_t K) {
  Grads<T> g{Mat<T>(core.rows(), core.cols()), Mat<T>::Zero(a.rows(), a.cols()), Mat<T>::Zero(b.rows(), b.cols())};
  for (int64_t k = 0; k < K; ++k) {
    Mat<T> dMk(a.cols(), b.cols());  // (P, Q)
    for (int64_t q = 0; q < b.cols(); ++q) dMk.col(q) = dM.col(q * K + k);
    const Mat<T> Ck = core_slice(core, k, K);
    const Mat<T> dCk = a * dMk * b.transpose();  // (r, r)
    for (int64_t j = 0; j < dCk.cols(); ++j) g.dcore.col(j * K + k) = dCk.col(j);
    g.da += Ck * b * dMk.transpose();
    g.db += Ck.transpose() * a * dMk;
  }
  return g;
}

}  // namespace gg::tucker
