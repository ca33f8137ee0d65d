// VB-LoRA (PEFT VBLoRAConfig, vblora Linear around nn.Linear), float64/float32 reference with the analytic backward.
// Every length-L tile of the LoRA factors is a mixture of k vectors of a trainable bank (num_vectors, L):
//   mix(ℓ)  = Σ_{j ∈ top_k(ℓ)} softmax(ℓ_top)_j · bank[j]      for each row ℓ (num_vectors) of the logits
//   A (r, d_in):  A[i, τL + l] = mix(logits_A[i, τ])[l]          logits_A (r, d_in / L, num_vectors)
//   B (d_out, r): B[τL + l, i] = mix(logits_B[τ, i])[l]          logits_B (d_out / L, r, num_vectors)
//   Y = X Wᵀ + b + (X Aᵀ) Bᵀ                                     (no scaling)
// Backward: LoRA's dA, dB, dX; then per row, with w = softmax(ℓ_top) and the tile's gradient g (L):
//   dbank[j] += w_j g,  dw_j = g · bank[j],  dℓ_j = w_j (dw_j − Σ_m w_m dw_m) for the k selected, 0 for the rest
// (top_k is locally constant: logits off the top get no gradient, as in PEFT).
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>

#include "core/registry.hpp"

namespace gg::vblora {

inline int64_t length(const HyperParams& hp) { return static_cast<int64_t>(hp.at("vector_length")); }
inline int64_t topk(const HyperParams& hp) { return static_cast<int64_t>(hp.at("topk")); }

// The k largest entries of a logits row (ties to the lower index) and their softmax weights.
template <class T>
void select(const Mat<T>& logits, int64_t row, int64_t k, std::vector<int64_t>& idx, std::vector<T>& w) {
  idx.resize(static_cast<size_t>(logits.cols()));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return logits(row, a) > logits(row, b) || (logits(row, a) == logits(row, b) && a < b); });
  idx.resize(static_cast<size_t>(k));
  w.resize(static_cast<size_t>(k));
  const T top = logits(row, idx[0]);
  T sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += (w[size_t(j)] = std::exp(logits(row, idx[size_t(j)]) - top));
  for (auto& v : w) v /= sum;
}

// (rows of logits, L): each row's mixture of bank vectors.
template <class T>
Mat<T> mix(const Mat<T>& logits, const Mat<T>& bank, int64_t k) {
  Mat<T> out = Mat<T>::Zero(logits.rows(), bank.cols());
  std::vector<int64_t> idx;
  std::vector<T> w;
  for (int64_t row = 0; row < logits.rows(); ++row) {
    select(logits, row, k, idx, w);
    for (int64_t j = 0; j < k; ++j) out.row(row) += w[size_t(j)] * bank.row(idx[size_t(j)]);
  }
  return out;
}

// Adds the gradients of mix() for upstream dmix (rows, L) to dlogits and dbank.
template <class T>
void mix_backward(const Mat<T>& logits, const Mat<T>& bank, int64_t k, const Mat<T>& dmix, Mat<T>& dlogits, Mat<T>& dbank) {
  std::vector<int64_t> idx;
  std::vector<T> w, dw(static_cast<size_t>(k));
  for (int64_t row = 0; row < logits.rows(); ++row) {
    select(logits, row, k, idx, w);
    T inner = 0;
    for (int64_t j = 0; j < k; ++j) {
      dw[size_t(j)] = dmix.row(row).dot(bank.row(idx[size_t(j)]));
      inner += w[size_t(j)] * dw[size_t(j)];
      dbank.row(idx[size_t(j)]) += w[size_t(j)] * dmix.row(row);
    }
    for (int64_t j = 0; j < k; ++j) dlogits(row, idx[size_t(j)]) += w[size_t(j)] * (dw[size_t(j)] - inner);
  }
}

// A (r, d_in) from its mixture rows (r · d_in/L, L): the same row-major storage.
template <class T>
Mat<T> factor_A(const Mat<T>& mixed, int64_t r) {
  return Eigen::Map<const Mat<T>>(mixed.data(), r, mixed.size() / r);
}

// B (d_out, r) from its mixture rows (d_out/L · r, L), row τ r + i holding B[τL : τL + L, i].
template <class T>
Mat<T> factor_B(const Mat<T>& mixed, int64_t r) {
  const int64_t L = mixed.cols(), tiles = mixed.rows() / r;
  Mat<T> B(tiles * L, r);
  for (int64_t tau = 0; tau < tiles; ++tau)
    for (int64_t i = 0; i < r; ++i) B.block(tau * L, i, L, 1) = mixed.row(tau * r + i).transpose();
  return B;
}

template <class T>
struct Factors {
  Mat<T> A, B;
};

template <class T>
Factors<T> factors(const TensorMap<T>& t, const HyperParams& hp) {
  const int64_t r = static_cast<int64_t>(hp.at("r"));
  const Mat<T>& bank = t.at("vblora_vector_bank");
  return {factor_A(mix(t.at("vblora_logits_A"), bank, topk(hp)), r), factor_B(mix(t.at("vblora_logits_B"), bank, topk(hp)), r)};
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Factors<T> f = factors(t, hp);
  Mat<T> y = x * t.at("weight").transpose() + (x * f.A.transpose()) * f.B.transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const int64_t r = static_cast<int64_t>(hp.at("r")), L = length(hp);
  const Mat<T>& bank = t.at("vblora_vector_bank");
  const Mat<T>& la = t.at("vblora_logits_A");
  const Mat<T>& lb = t.at("vblora_logits_B");
  const Factors<T> f = factors(t, hp);
  const Mat<T> S = x * f.A.transpose();  // (N, r)
  const Mat<T> dS = dy * f.B;             // (N, r)
  const Mat<T> dA = dS.transpose() * x;   // (r, d_in)
  const Mat<T> dB = dy.transpose() * S;   // (d_out, r)
  // dA's storage is already its mixture rows; dB's rows are gathered back per (tile, rank).
  const Mat<T> dmix_A = Eigen::Map<const Mat<T>>(dA.data(), la.rows(), L);
  Mat<T> dmix_B(lb.rows(), L);
  for (int64_t tau = 0; tau < lb.rows() / r; ++tau)
    for (int64_t i = 0; i < r; ++i) dmix_B.row(tau * r + i) = dB.block(tau * L, i, L, 1).transpose();
  Grads<T> g;
  Mat<T> dla = Mat<T>::Zero(la.rows(), la.cols()), dlb = Mat<T>::Zero(lb.rows(), lb.cols());
  Mat<T> dbank = Mat<T>::Zero(bank.rows(), bank.cols());
  mix_backward(la, bank, topk(hp), dmix_A, dla, dbank);
  mix_backward(lb, bank, topk(hp), dmix_B, dlb, dbank);
  g.dparams["vblora_logits_A"] = std::move(dla);
  g.dparams["vblora_logits_B"] = std::move(dlb);
  g.dparams["vblora_vector_bank"] = std::move(dbank);
  g.dx = dy * t.at("weight") + dS * f.A;
  return g;
}

}  // namespace gg::vblora
