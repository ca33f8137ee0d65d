// DeLoRA (PEFT DeloraConfig, DeloraLinear around nn.Linear), float64/float32 reference with the analytic backward.
//   w (d_in): frozen column norms of the base W, taken once at init (PEFT's delora_w_norm buffer)
//   H = (X ⊙ w) Aᵀ                                  (N, r)
//   a_i = max(‖A_i‖, 1e-4), b_i = max(‖B_{:,i}‖, 1e-4)  (r)   row norms of A, column norms of B, clamped
//   c_i = λ / (r · a_i · b_i)                         (r)   λ (1) trainable
//   Y = X Wᵀ + b + (H ⊙ c) Bᵀ                         (N, d_out)
// Backward (U = dY B, dc = Σ_n U ⊙ H; a clamped norm passes no gradient, as torch.clamp's):
//   dB = dYᵀ (H ⊙ c) − [b_i unclamped] dc_i c_i / b_i · B_{:,i} / ‖B_{:,i}‖
//   dA = (U ⊙ c)ᵀ (X ⊙ w) − [a_i unclamped] dc_i c_i / a_i · A_i / ‖A_i‖
//   dλ = Σ_i dc_i / (r a_i b_i);  dX = dY W + ((U ⊙ c) A) ⊙ w
#pragma once
#include "core/registry.hpp"

namespace gg::delora {

inline constexpr double norm_floor = 1e-4;  // PEFT's clamp on the factor norms

template <class T>
struct Scales {
  Mat<T> a, b, c;  // (1, r) each: clamped norms of A's rows and B's columns, and the per-rank scale
};

template <class T>
Scales<T> scales(const TensorMap<T>& t, const HyperParams& hp) {
  Scales<T> s;
  s.a = t.at("delora_A").rowwise().norm().transpose().cwiseMax(T(norm_floor));
  s.b = t.at("delora_B").colwise().norm().cwiseMax(T(norm_floor));
  const T lambda = t.at("delora_lambda")(0, 0);
  s.c = (lambda / T(hp.at("r")) / (s.a.array() * s.b.array())).matrix();
  return s;
}

template <class T>
Mat<T> weighted_input(const Mat<T>& x, const TensorMap<T>& t) {
  return (x.array().rowwise() * t.at("delora_w_norm").row(0).array()).matrix();  // (N, d_in)
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Scales<T> s = scales(t, hp);
  const Mat<T> H = weighted_input(x, t) * t.at("delora_A").transpose();  // (N, r)
  Mat<T> y = x * t.at("weight").transpose();
  y += (H.array().rowwise() * s.c.row(0).array()).matrix() * t.at("delora_B").transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& A = t.at("delora_A");
  const Mat<T>& B = t.at("delora_B");
  const Scales<T> s = scales(t, hp);
  const Mat<T> Xw = weighted_input(x, t);                                   // (N, d_in)
  const Mat<T> H = Xw * A.transpose();                                      // (N, r)
  const Mat<T> U = dy * B;                                                  // (N, r)
  const Mat<T> dc = (U.array() * H.array()).colwise().sum().matrix();       // (1, r)
  const Mat<T> dH = (U.array().rowwise() * s.c.row(0).array()).matrix();    // (N, r)
  Mat<T> dA = dH.transpose() * Xw;                                          // (r, d_in)
  Mat<T> dB = dy.transpose() * (H.array().rowwise() * s.c.row(0).array()).matrix();  // (d_out, r)
  const T r = T(hp.at("r"));
  T dlambda = 0;
  for (int64_t i = 0; i < A.rows(); ++i) {
    const T through_c = dc(0, i) * s.c(0, i);  // dL/dc_i · c_i: c_i ∝ 1/a_i and 1/b_i
    const T norm_a = A.row(i).norm(), norm_b = B.col(i).norm();
    if (norm_a >= T(norm_floor)) dA.row(i) -= through_c / s.a(0, i) / norm_a * A.row(i);
    if (norm_b >= T(norm_floor)) dB.col(i) -= through_c / s.b(0, i) / norm_b * B.col(i);
    dlambda += dc(0, i) / (r * s.a(0, i) * s.b(0, i));
  }
  Grads<T> g;
  g.dparams["delora_A"] = std::move(dA);
  g.dparams["delora_B"] = std::move(dB);
  g.dparams["delora_lambda"] = Mat<T>::Constant(1, 1, dlambda);
  g.dx = dy * t.at("weight") + ((dH * A).array().rowwise() * t.at("delora_w_norm").row(0).array()).matrix();
  return g;
}

}  // namespace gg::delora
