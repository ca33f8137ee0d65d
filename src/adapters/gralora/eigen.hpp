// GraLoRA (PEFT GraloraConfig, gralora Linear around nn.Linear), float64/float32 reference with the analytic backward.
// X's columns and Y's columns are cut into k blocks (widths di = d_in/k, do = d_out/k); the rank r into k slices of
// s = r/k. Input block n and output block j are joined by their own rank-s pair:
//   A (k, di, r): A[n] maps input block n to r columns; its slice j (columns j·s..) feeds output block j
//   B (k, r, do): B[j] maps r rows to output block j; its slice n (rows n·s..) takes input block n
//   H_n = X_n A[n]                                         (N, r)
//   Y_j = (X Wᵀ + b)_j + σ Σ_n H_n[:, slice j] B[j][slice n, :]   σ = alpha / (r + hybrid_r)
//   hybrid_r > 0 adds a plain low-rank branch: Y += σ (X A_gᵀ) B_gᵀ, A_g (hr, d_in), B_g (d_out, hr)
// Backward, per (n, j) with G_j = dY_j (N, do):
//   dB[j][slice n] = σ H_n[:, slice j]ᵀ G_j;  dH_n[:, slice j] = σ G_j B[j][slice n]ᵀ
//   dA[n] = X_nᵀ dH_n;  dX_n = (dY W)_n + dH_n A[n]ᵀ;  hybrid: LoRA's formulas with σ
#pragma once
#include "core/registry.hpp"

namespace gg::gralora {

struct Blocks {
  int64_t k, s, di, dout, r;  // block count, rank slice, input and output block widths, rank
};

inline Blocks blocks(int64_t d_in, int64_t d_out, const HyperParams& hp) {
  const int64_t k = static_cast<int64_t>(hp.at("gralora_k")), r = static_cast<int64_t>(hp.at("r"));
  return {k, r / k, d_in / k, d_out / k, r};
}

inline double scaling(const HyperParams& hp) { return hp.at("alpha") / (hp.at("r") + hp.at("hybrid_r")); }

inline bool has_hybrid(const HyperParams& hp) { return hp.at("hybrid_r") > 0; }

// A is stored (k·di, r): rows n·di.. are A[n]; B is stored (k·r, do): rows j·r.. are B[j].
template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Blocks b = blocks(x.cols(), t.at("weight").rows(), hp);
  const T sigma = T(scaling(hp));
  const Mat<T>& A = t.at("gralora_A");
  const Mat<T>& B = t.at("gralora_B");
  Mat<T> y = x * t.at("weight").transpose();
  for (int64_t n = 0; n < b.k; ++n) {
    const Mat<T> H = x.middleCols(n * b.di, b.di) * A.middleRows(n * b.di, b.di);  // (N, r)
    for (int64_t j = 0; j < b.k; ++j)
      y.middleCols(j * b.dout, b.dout) += sigma * H.middleCols(j * b.s, b.s) * B.block(j * b.r + n * b.s, 0, b.s, b.dout);
  }
  if (has_hybrid(hp)) y += sigma * (x * t.at("gralora_A_general").transpose()) * t.at("gralora_B_general").transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Blocks b = blocks(x.cols(), t.at("weight").rows(), hp);
  const T sigma = T(scaling(hp));
  const Mat<T>& A = t.at("gralora_A");
  const Mat<T>& B = t.at("gralora_B");
  Mat<T> dA = Mat<T>::Zero(A.rows(), A.cols()), dB = Mat<T>::Zero(B.rows(), B.cols());
  Mat<T> dx = dy * t.at("weight");
  for (int64_t n = 0; n < b.k; ++n) {
    const auto Xn = x.middleCols(n * b.di, b.di);
    const auto An = A.middleRows(n * b.di, b.di);  // (di, r)
    const Mat<T> H = Xn * An;                      // (N, r)
    Mat<T> dH(x.rows(), b.r);
    for (int64_t j = 0; j < b.k; ++j) {
      const auto G = dy.middleCols(j * b.dout, b.dout);               // (N, do)
      const auto Bjn = B.block(j * b.r + n * b.s, 0, b.s, b.dout);   // (s, do)
      dB.block(j * b.r + n * b.s, 0, b.s, b.dout) = sigma * H.middleCols(j * b.s, b.s).transpose() * G;
      dH.middleCols(j * b.s, b.s) = sigma * G * Bjn.transpose();
    }
    dA.middleRows(n * b.di, b.di) = Xn.transpose() * dH;
    dx.middleCols(n * b.di, b.di) += dH * An.transpose();
  }
  Grads<T> g;
  if (has_hybrid(hp)) {
    const Mat<T>& Ag = t.at("gralora_A_general");  // (hr, d_in)
    const Mat<T>& Bg = t.at("gralora_B_general");  // (d_out, hr)
    const Mat<T> S = x * Ag.transpose();            // (N, hr)
    const Mat<T> dS = sigma * dy * Bg;              // (N, hr)
    g.dparams["gralora_B_general"] = sigma * dy.transpose() * S;
    g.dparams["gralora_A_general"] = dS.transpose() * x;
    dx += dS * Ag;
  }
  g.dparams["gralora_A"] = std::move(dA);
  g.dparams["gralora_B"] = std::move(dB);
  g.dx = std::move(dx);
  return g;
}

}  // namespace gg::gralora
