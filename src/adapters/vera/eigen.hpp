// VeRA (PEFT VeraConfig, vera Linear around nn.Linear), float64/float32 reference with the analytic backward.
//   A (r, d_in), B (d_out, r): frozen random projections, the leading blocks of the model-wide vera_A/vera_B
//   S = X Aᵀ                    (N, r)
//   P = (S ⊙ λ_d) Bᵀ            (N, d_out)     λ_d (r) trainable
//   Y = X Wᵀ + b + P ⊙ λ_b      (N, d_out)     λ_b (d_out) trainable
// Backward:
//   dλ_b = Σ_n dY ⊙ P;  dZ = dY ⊙ λ_b;  dH = dZ B (N, r);  dλ_d = Σ_n dH ⊙ S;  dX = dY W + (dH ⊙ λ_d) A
#pragma once
#include "core/registry.hpp"

namespace gg::vera {

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&) {
  const Mat<T> S = x * t.at("vera_A").transpose();                                            // (N, r)
  const Mat<T> P = (S.array().rowwise() * t.at("vera_lambda_d").row(0).array()).matrix() *   // (N, d_out)
                   t.at("vera_B").transpose();
  Mat<T> y = x * t.at("weight").transpose();
  y += (P.array().rowwise() * t.at("vera_lambda_b").row(0).array()).matrix();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&, const Mat<T>& dy) {
  const Mat<T>& A = t.at("vera_A");
  const Mat<T>& B = t.at("vera_B");
  const auto ld = t.at("vera_lambda_d").row(0).array();
  const auto lb = t.at("vera_lambda_b").row(0).array();
  const Mat<T> S = x * A.transpose();                                   // (N, r)
  const Mat<T> P = (S.array().rowwise() * ld).matrix() * B.transpose();  // (N, d_out)
  const Mat<T> dZ = (dy.array().rowwise() * lb).matrix();               // (N, d_out)
  const Mat<T> dH = dZ * B;                                              // (N, r)
  Grads<T> g;
  g.dparams["vera_lambda_b"] = (dy.array() * P.array()).colwise().sum().matrix();  // (1, d_out)
  g.dparams["vera_lambda_d"] = (dH.array() * S.array()).colwise().sum().matrix();  // (1, r)
  g.dx = dy * t.at("weight") + (dH.array().rowwise() * ld).matrix() * A;
  return g;
}

}  // namespace gg::vera
