// OFT (PEFT OFTConfig, oft Linear around nn.Linear), float64/float32 reference with the analytic backward.
// X's columns are cut into nb = d_in / H blocks; block i is rotated by R_i (H x H) before the base layer:
//   S_i skew: S[a, b] = w_i[k], S[b, a] = −w_i[k] for the k-th pair (a < b) of the strict upper triangle, row-major
//   R_i = Cayley–Neumann: I + 2S + 2S² + … + 2S^{m−1} + S^m, m = max(n − 1, 3) (n = 2: I + 2S)   [PEFT's default]
//         or the exact Cayley transform (I − S)(I + S)^{-1}                                        [use_cayley_neumann=0]
//   Y = (X · blockdiag(R_0, …)) Wᵀ + b;  block_share: one w, one R for every block
// (PEFT's series converges to (I + S)(I − S)^{-1}, the transpose of its exact mode: the two modes rotate opposite
// ways for the same weights, as in PEFT.)
// Backward: dXr = dY W;  dX_i = dXr_i R_iᵀ;  dR_i = X_iᵀ dXr_i;  then through R(S):
//   series: dS = Σ_k c_k Σ_{j<k} (S^j)ᵀ dR (S^{k−1−j})ᵀ;   exact (M = (I + S)^{-1}): dS = −dR Mᵀ − Mᵀ (I − S)ᵀ dR Mᵀ
//   dw[k] = dS[a, b] − dS[b, a]
#pragma once
#include <Eigen/LU>
#include <vector>

#include "core/registry.hpp"

namespace gg::oft {

inline int64_t block_size(const HyperParams& hp) { return static_cast<int64_t>(hp.at("oft_block_size")); }
inline int64_t pairs(int64_t h) { return h * (h - 1) / 2; }

// The block size generic checks use (OFT and BOFT): the smallest block of at least 3 that tiles d_in — several blocks,
// each with more than one angle — else d_in itself (one block on prime widths).
inline int64_t check_block_size(int64_t d_in) {
  for (int64_t c = 3; c < d_in; ++c)
    if (d_in % c == 0) return c;
  return d_in;
}
inline bool neumann(const HyperParams& hp) { return hp.at("use_cayley_neumann") != 0.0; }

// The series' coefficients c_1..c_m of S^k (c_0 = 1 for I), as PEFT's _cayley_batch sums them.
inline std::vector<double> series(const HyperParams& hp) {
  const auto n = static_cast<int64_t>(hp.at("num_cayley_neumann_terms"));
  if (n <= 1) return {};
  if (n == 2) return {2.0};
  const int64_t m = std::max<int64_t>(n - 1, 3);
  std::vector<double> c(m, 2.0);
  c.back() = 1.0;
  return c;
}

template <class T>
Mat<T> skew(const Mat<T>& w, int64_t row, int64_t h) {
  Mat<T> S = Mat<T>::Zero(h, h);
  int64_t k = 0;
  for (int64_t a = 0; a < h; ++a)
    for (int64_t b = a + 1; b < h; ++b, ++k) {
      S(a, b) = w(row, k);
      S(b, a) = -w(row, k);
    }
  return S;
}

// The exact Cayley transform (I − S)(I + S)^{-1} and its backward (M = (I + S)^{-1}): dS = −dR Mᵀ − Mᵀ (I − S)ᵀ dR Mᵀ.
// OFT's exact mode and BOFT's only mode.
template <class T>
Mat<T> cayley(const Mat<T>& S) {
  const Mat<T> I = Mat<T>::Identity(S.rows(), S.cols());
  return (I - S) * (I + S).inverse();
}

template <class T>
Mat<T> cayley_backward(const Mat<T>& S, const Mat<T>& dR) {
  const Mat<T> I = Mat<T>::Identity(S.rows(), S.cols());
  const Mat<T> Mt = (I + S).inverse().transpose();
  return -dR * Mt - Mt * (I - S).transpose() * dR * Mt;
}

template <class T>
Mat<T> rotation(const Mat<T>& S, const HyperParams& hp) {
  const int64_t h = S.rows();
  const Mat<T> I = Mat<T>::Identity(h, h);
  if (!neumann(hp)) return cayley(S);
  Mat<T> R = I, P = I;
  for (double c : series(hp)) {
    P = P * S;
    R += T(c) * P;
  }
  return R;
}

template <class T>
Mat<T> rotation_backward(const Mat<T>& S, const Mat<T>& dR, const HyperParams& hp) {
  const int64_t h = S.rows();
  const Mat<T> I = Mat<T>::Identity(h, h);
  if (!neumann(hp)) return cayley_backward(S, dR);
  const std::vector<double> c = series(hp);
  std::vector<Mat<T>> powers{I};  // S^0 .. S^{m−1}
  for (size_t k = 1; k < c.size(); ++k) powers.push_back(powers.back() * S);
  Mat<T> dS = Mat<T>::Zero(h, h);
  for (size_t k = 1; k <= c.size(); ++k)
    for (size_t j = 0; j < k; ++j) dS += T(c[k - 1]) * powers[j].transpose() * dR * powers[k - 1 - j].transpose();
  return dS;
}

template <class T>
void add_pair_grads(const Mat<T>& dS, Mat<T>& dw, int64_t row) {
  int64_t k = 0;
  for (int64_t a = 0; a < dS.rows(); ++a)
    for (int64_t b = a + 1; b < dS.rows(); ++b, ++k) dw(row, k) += dS(a, b) - dS(b, a);
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& w = t.at("oft_R");
  const int64_t h = block_size(hp), nb = x.cols() / h;
  Mat<T> xr(x.rows(), x.cols());
  for (int64_t i = 0; i < nb; ++i)
    xr.middleCols(i * h, h) = x.middleCols(i * h, h) * rotation(skew(w, w.rows() == 1 ? 0 : i, h), hp);
  Mat<T> y = xr * t.at("weight").transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& w = t.at("oft_R");
  const int64_t h = block_size(hp), nb = x.cols() / h;
  const Mat<T> dxr = dy * t.at("weight");  // (N, d_in)
  Grads<T> g;
  g.dx = Mat<T>(x.rows(), x.cols());
  Mat<T> dw = Mat<T>::Zero(w.rows(), w.cols());
  for (int64_t i = 0; i < nb; ++i) {
    const int64_t row = w.rows() == 1 ? 0 : i;
    const Mat<T> S = skew(w, row, h);
    g.dx.middleCols(i * h, h) = dxr.middleCols(i * h, h) * rotation(S, hp).transpose();
    const Mat<T> dR = x.middleCols(i * h, h).transpose() * dxr.middleCols(i * h, h);
    add_pair_grads(rotation_backward(S, dR, hp), dw, row);
  }
  g.dparams["oft_R"] = std::move(dw);
  return g;
}

}  // namespace gg::oft
