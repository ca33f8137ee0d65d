// LoRA (and rsLoRA), float64/float32 reference with the analytic backward written out.
//   S = X Aᵀ                      (N, r)
//   Y = X Wᵀ + b + s·(S Bᵀ + b_B)  (N, d_out)   b_B only with lora_bias
#pragma once
#include "core/lowrank.hpp"

namespace gg::lora {

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& W = t.at("weight");  // (d_out, d_in)
  const Mat<T>& A = t.at("lora_A");  // (r, d_in)
  const Mat<T>& B = t.at("lora_B");  // (d_out, r)
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> S = x * A.transpose();  // (N, r)
  Mat<T> y = x * W.transpose();        // (N, d_out)
  y.noalias() += s * (S * B.transpose());
  y.rowwise() += t.at("bias").row(0);
  if (hp.at("lora_bias") != 0.0) y.rowwise() += s * t.at("lora_B_bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");
  const Mat<T>& A = t.at("lora_A");
  const Mat<T>& B = t.at("lora_B");
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> S = x * A.transpose();  // (N, r)
  const Mat<T> dL = s * dy;            // (N, d_out) gradient of the low-rank product S Bᵀ
  const Mat<T> dS = dL * B;            // (N, r)
  Grads<T> g;
  g.dparams["lora_B"] = dL.transpose() * S;  // (d_out, r)
  g.dparams["lora_A"] = dS.transpose() * x;  // (r, d_in)
  if (hp.at("lora_bias") != 0.0) g.dparams["lora_B_bias"] = dL.colwise().sum();  // (1, d_out)
  g.dx = dy * W;                             // (N, d_in) base term
  g.dx.noalias() += dS * A;                  // adapter term
  return g;
}

}  // namespace gg::lora
