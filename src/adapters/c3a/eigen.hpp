// C3A (PEFT C3AConfig, C3ALinear around nn.Linear), float64/float32 reference with the analytic backward.
// K (m, n, B) with m = d_out/B, n = d_in/B: block (i, j) of ΔW is the circulant that cross-correlates input block j
// with K[i, j, :], normalised by d_in (PEFT's FFT pair cancels; the 1/d_in is its explicit division):
//   ΔW[i·B + t, j·B + s] = K[i, j, (s − t) mod B] / d_in        Y = X (W + ΔW)ᵀ + b
// Backward (the plain, obviously-right form: through the dense ΔW, which the reference may form):
//   dX = dY (W + ΔW);  dΔW = dYᵀ X;  dK[i, j, l] = Σ_t dΔW[i·B + t, j·B + (t + l) mod B] / d_in
// PEFT 0.21.2's custom backward for X uses K[(s + t) mod B] instead, wrong for B >= 3 (a recorded finding).
#pragma once
#include "core/registry.hpp"

namespace gg::c3a {

// K is stored (m·n, B): row i·n + j is K[i, j, :].
template <class T>
Mat<T> delta_weight(const Mat<T>& K, int64_t d_in, int64_t d_out) {
  const int64_t B = K.cols(), m = d_out / B, n = d_in / B;
  Mat<T> dw(d_out, d_in);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t t = 0; t < B; ++t)
        for (int64_t s = 0; s < B; ++s) dw(i * B + t, j * B + s) = K(i * n + j, (s - t + B) % B) / T(d_in);
  return dw;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&) {
  const Mat<T>& w = t.at("weight");
  Mat<T> y = x * (w + delta_weight(t.at("c3a_kernel"), w.cols(), w.rows())).transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&, const Mat<T>& dy) {
  const Mat<T>& w = t.at("weight");
  const Mat<T>& K = t.at("c3a_kernel");
  const int64_t B = K.cols(), d_in = w.cols(), n = d_in / B;
  const Mat<T> ddw = dy.transpose() * x;  // (d_out, d_in)
  Mat<T> dK = Mat<T>::Zero(K.rows(), B);
  for (int64_t row = 0; row < K.rows(); ++row) {
    const int64_t i = row / n, j = row % n;
    for (int64_t l = 0; l < B; ++l)
      for (int64_t tt = 0; tt < B; ++tt) dK(row, l) += ddw(i * B + tt, j * B + (tt + l) % B);
  }
  Grads<T> g;
  g.dparams["c3a_kernel"] = dK / T(d_in);
  g.dx = dy * (w + delta_weight(K, d_in, w.rows()));
  return g;
}

}  // namespace gg::c3a
