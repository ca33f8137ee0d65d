// RandLoRA (PEFT RandLoraConfig, randlora Linear around nn.Linear), float64/float32 reference with the analytic
// backward. mn = min(d_in, d_out), mx = max, nb = ceil(mn / r) bases; frozen random A (r, mn), B (mx, nb, r) (leading
// blocks of model-wide buffers); trainable λ (r, nb), γ (nb, mn).
//   Af (r·nb, mn): row k·nb + b = λ[k,b] · A[k,:] ⊙ γ[b,:]
//   Bf (mx, nb·r): column b·r + k = B[:, b, k]      (PEFT's two flattenings, paired index by index as PEFT pairs them)
//   ΔW_(mx × mn) = s · Bf Af,  s = randlora_alpha / r; it is W's shape when d_in <= d_out, its transpose otherwise:
//   d_in <= d_out: Y = X Wᵀ + b + s (X Afᵀ) Bfᵀ      else: Y = X Wᵀ + b + s (X Bf) Af
// Backward through Af (dAf from the branch above, then Af's product rule):
//   dλ[k,b] = Σ_j dAf[k·nb+b, j] A[k,j] γ[b,j];   dγ[b,j] = Σ_k dAf[k·nb+b, j] A[k,j] λ[k,b]
#pragma once
#include "core/registry.hpp"

namespace gg::randlora {

inline int64_t num_bases(const Dims& d, int64_t r) { return (std::min(d.d_in, d.d_out) + r - 1) / r; }

inline double scaling(const HyperParams& hp) { return hp.at("randlora_alpha") / hp.at("r"); }

// A is stored (r, mn) (PEFT's (r, 1, mn)), B (mx·nb, r): row i·nb + b is B[i, b, :].
template <class T>
Mat<T> scaled_a(const TensorMap<T>& t) {  // Af (r·nb, mn)
  const Mat<T>& A = t.at("randlora_A");
  const Mat<T>& lambda = t.at("randlora_lambda");  // (r, nb)
  const Mat<T>& gamma = t.at("randlora_gamma");    // (nb, mn)
  const int64_t r = lambda.rows(), nb = lambda.cols();
  Mat<T> af(r * nb, A.cols());
  for (int64_t k = 0; k < r; ++k)
    for (int64_t b = 0; b < nb; ++b) af.row(k * nb + b) = lambda(k, b) * (A.row(k).array() * gamma.row(b).array()).matrix();
  return af;
}

template <class T>
Mat<T> flat_b(const TensorMap<T>& t, int64_t nb) {  // Bf (mx, nb·r)
  const Mat<T>& B = t.at("randlora_B");
  const int64_t r = B.cols(), mx = B.rows() / nb;
  Mat<T> bf(mx, nb * r);
  for (int64_t i = 0; i < mx; ++i)
    for (int64_t b = 0; b < nb; ++b) bf.block(i, b * r, 1, r) = B.row(i * nb + b);
  return bf;
}

template <class T>
bool input_is_min(const Mat<T>& x, const TensorMap<T>& t) { return x.cols() <= t.at("weight").rows(); }

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T> af = scaled_a(t), bf = flat_b(t, t.at("randlora_lambda").cols());
  const T s = T(scaling(hp));
  Mat<T> y = x * t.at("weight").transpose();
  y += input_is_min(x, t) ? Mat<T>(s * (x * af.transpose()) * bf.transpose()) : Mat<T>(s * (x * bf) * af);
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& A = t.at("randlora_A");
  const Mat<T>& lambda = t.at("randlora_lambda");
  const Mat<T>& gamma = t.at("randlora_gamma");
  const int64_t r = lambda.rows(), nb = lambda.cols();
  const Mat<T> af = scaled_a(t), bf = flat_b(t, nb);
  const T s = T(scaling(hp));
  Grads<T> g;
  g.dx = dy * t.at("weight");
  Mat<T> daf;  // (r·nb, mn)
  if (input_is_min(x, t)) {
    const Mat<T> dP = s * dy * bf;  // (N, r·nb), P = X Afᵀ
    daf = dP.transpose() * x;
    g.dx += dP * af;
  } else {
    const Mat<T> Q = x * bf;                       // (N, r·nb)
    const Mat<T> dQ = s * dy * af.transpose();     // (N, r·nb)
    daf = s * Q.transpose() * dy;
    g.dx += dQ * bf.transpose();
  }
  Mat<T> dlambda(r, nb), dgamma = Mat<T>::Zero(nb, A.cols());
  for (int64_t k = 0; k < r; ++k)
    for (int64_t b = 0; b < nb; ++b) {
      const auto row = daf.row(k * nb + b).array() * A.row(k).array();  // dAf ⊙ A[k]
      dlambda(k, b) = (row * gamma.row(b).array()).sum();
      dgamma.row(b) += (lambda(k, b) * row).matrix();
    }
  g.dparams["randlora_lambda"] = std::move(dlambda);
  g.dparams["randlora_gamma"] = std::move(dgamma);
  return g;
}

}  // namespace gg::randlora
