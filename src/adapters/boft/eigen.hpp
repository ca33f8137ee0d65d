// BOFT (PEFT BOFTConfig, boft Linear around nn.Linear), float64/float32 reference with the analytic backward.
// H = boft_block_size, D = d_in / H blocks, m = boft_n_butterfly_factor factors; per factor i and block j a free
// H x H matrix A_ij (boft_R) is made skew, S = (A − Aᵀ)/2, and rotated by the exact Cayley Q = (I − S)(I + S)^{-1};
//   F_i = P_i · blockdiag(Q_i0, …, Q_i,D−1) · P_iᵀ,   M = F_{m−1} ⋯ F_1 F_0,   Y = ((X M) Wᵀ) ⊙ sᵀ + b
// P_i is PEFT's butterfly permutation (P[j, p[j]] = 1): identity for i = 0 (and whenever m = 1); else within every
// chunk of H·2^i indices the sub-chunks of H/2 are reordered, even-numbered first, then odd.
// Backward (the reference forms M, d_in x d_in, plainly): Z = X M Wᵀ; ds = Σ_n dY ⊙ Z; dXM = (dY ⊙ sᵀ) W;
//   dX = dXM Mᵀ; dM = Xᵀ dXM; dF_i = (F_{m−1}⋯F_{i+1})ᵀ dM (F_{i−1}⋯F_0)ᵀ; dBD_i = P_iᵀ dF_i P_i;
//   dQ_ij = block j of dBD_i; dS by the Cayley backward; dA = (dS − dSᵀ)/2 (A's diagonal never gets a gradient).
#pragma once
#include <vector>

#include "adapters/oft/eigen.hpp"

namespace gg::boft {

inline int64_t block_size(const HyperParams& hp) { return static_cast<int64_t>(hp.at("boft_block_size")); }
inline int64_t factors(const HyperParams& hp) { return static_cast<int64_t>(hp.at("boft_n_butterfly_factor")); }

// p for factor i: (P v)_j = v_{p[j]} (PEFT's block_butterfly_perm + perm2mat).
inline std::vector<int64_t> butterfly(int64_t d_in, int64_t h, int64_t i, int64_t m) {
  std::vector<int64_t> p(d_in);
  for (int64_t j = 0; j < d_in; ++j) p[j] = j;
  if (m == 1 || i == 0) return p;
  const int64_t chunk = h << i, sub = h / 2, subs = chunk / sub;
  for (int64_t start = 0; start < d_in; start += chunk) {
    int64_t out = start;
    for (int64_t parity = 0; parity < 2; ++parity)
      for (int64_t c = parity; c < subs; c += 2)
        for (int64_t e = 0; e < sub; ++e) p[out++] = start + c * sub + e;
  }
  return p;
}

template <class T>
Mat<T> perm_matrix(const std::vector<int64_t>& p) {
  Mat<T> P = Mat<T>::Zero(p.size(), p.size());
  for (size_t j = 0; j < p.size(); ++j) P(j, p[j]) = T(1);
  return P;
}

// A_ij is stored at rows (i·D + j)·H of boft_R's (m·D·H, H) storage.
template <class T>
Mat<T> skew(const Mat<T>& R, int64_t i, int64_t j, int64_t d, int64_t h) {
  const Mat<T> A = R.block((i * d + j) * h, 0, h, h);
  return T(0.5) * (A - A.transpose());
}

template <class T>
std::vector<Mat<T>> factor_matrices(const TensorMap<T>& t, const HyperParams& hp, int64_t d_in) {
  const int64_t h = block_size(hp), d = d_in / h, m = factors(hp);
  std::vector<Mat<T>> F;
  for (int64_t i = 0; i < m; ++i) {
    Mat<T> bd = Mat<T>::Zero(d_in, d_in);
    for (int64_t j = 0; j < d; ++j) bd.block(j * h, j * h, h, h) = oft::cayley(skew(t.at("boft_R"), i, j, d, h));
    const Mat<T> P = perm_matrix<T>(butterfly(d_in, h, i, m));
    F.push_back(P * bd * P.transpose());
  }
  return F;
}

template <class T>
Mat<T> product(const std::vector<Mat<T>>& F, int64_t from, int64_t to, int64_t n) {  // F_{to−1} ⋯ F_from
  Mat<T> out = Mat<T>::Identity(n, n);
  for (int64_t i = from; i < to; ++i) out = F[i] * out;
  return out;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const auto F = factor_matrices(t, hp, x.cols());
  const Mat<T> M = product(F, 0, static_cast<int64_t>(F.size()), x.cols());
  Mat<T> y = ((x * M * t.at("weight").transpose()).array().rowwise() * t.at("boft_s").col(0).transpose().array()).matrix();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const int64_t d_in = x.cols(), h = block_size(hp), d = d_in / h, m = factors(hp);
  const Mat<T>& W = t.at("weight");
  const auto F = factor_matrices(t, hp, d_in);
  const Mat<T> M = product(F, 0, m, d_in);
  const auto s = t.at("boft_s").col(0).transpose().array();
  Grads<T> g;
  g.dparams["boft_s"] = (dy.array() * (x * M * W.transpose()).array()).colwise().sum().transpose().matrix();
  const Mat<T> dxm = (dy.array().rowwise() * s).matrix() * W;  // (N, d_in)
  g.dx = dxm * M.transpose();
  const Mat<T> dM = x.transpose() * dxm;
  const Mat<T>& R = t.at("boft_R");
  Mat<T> dR = Mat<T>::Zero(R.rows(), R.cols());
  for (int64_t i = 0; i < m; ++i) {
    const Mat<T> dF = product(F, i + 1, m, d_in).transpose() * dM * product(F, 0, i, d_in).transpose();
    const Mat<T> P = perm_matrix<T>(butterfly(d_in, h, i, m));
    const Mat<T> dBD = P.transpose() * dF * P;
    for (int64_t j = 0; j < d; ++j) {
      const Mat<T> dS = oft::cayley_backward(skew(R, i, j, d, h), Mat<T>(dBD.block(j * h, j * h, h, h)));
      dR.block((i * d + j) * h, 0, h, h) = T(0.5) * (dS - dS.transpose());
    }
  }
  g.dparams["boft_R"] = std::move(dR);
  return g;
}

}  // namespace gg::boft
