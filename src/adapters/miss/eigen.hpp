// MiSS (PEFT MissConfig, MissLinear around nn.Linear, the default "miss" mode), float64/float32 reference with the
// analytic backward.
//   F = fold(X) (N, r): F[n, j] = Σ_{k ≡ j (mod r)} X[n, k]   (PEFT pads X to a multiple of r, splits it into
//                                                                blocks of r columns and sums the blocks)
//   Y = X Wᵀ + b + F D,   D = miss_block (r, d_out)
// Backward:  dD = Fᵀ dY;  dX = dY W + unfold(dY Dᵀ),  unfold(G)[n, k] = G[n, k mod r]
#pragma once
#include "core/registry.hpp"

namespace gg::miss {

template <class T>
Mat<T> fold(const Mat<T>& x, int64_t r) {
  Mat<T> f = Mat<T>::Zero(x.rows(), r);
  for (int64_t k = 0; k < x.cols(); ++k) f.col(k % r) += x.col(k);
  return f;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& D = t.at("miss_block");
  Mat<T> y = x * t.at("weight").transpose() + fold(x, D.rows()) * D;
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& D = t.at("miss_block");
  const int64_t r = D.rows();
  const Mat<T> G = dy * D.transpose();  // (N, r)
  Grads<T> g;
  g.dparams["miss_block"] = fold(x, r).transpose() * dy;  // (r, d_out)
  g.dx = dy * t.at("weight");
  for (int64_t k = 0; k < x.cols(); ++k) g.dx.col(k) += G.col(k % r);
  return g;
}

}  // namespace gg::miss
