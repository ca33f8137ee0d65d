// AdaLoRA (PEFT AdaLoraConfig, adalora SVDLinear), float64/float32 reference with the analytic backward written out.
//   P = A ⊙ E                (r, d_in)    E (r, 1), the "singular values", scales row i of A by E_i
//   S = X Pᵀ                 (N, r)
//   Y = X Wᵀ + b + s·S Bᵀ    (N, d_out)
//   s = (α > 0 ? α : r) / (r + 1e-5)      PEFT: scaling / (ranknum + 1e-5), scaling = α (r when α <= 0),
//                                          ranknum = float(r), r = init_r
// Backward:
//   dL = s·dY                (N, d_out)   gradient of the low-rank product S Bᵀ
//   dB = dLᵀ S               (d_out, r)
//   dS = dL B                (N, r)
//   dP = dSᵀ X               (r, d_in)
//   dA = dP ⊙ E              (r, d_in)
//   dE = Σ_cols dP ⊙ A       (r, 1)
//   dX = dY W + dS P         (N, d_in)    base term + adapter term
#pragma once
#include "core/lowrank.hpp"

namespace gg::adalora {

inline double scaling(const HyperParams& hp) {
  const double r = hp.at("init_r");
  const double alpha = hp.at("lora_alpha");
  return (alpha > 0 ? alpha : r) / (r + 1e-5);
}

// P = A ⊙ E: each row of A times its singular value.
template <class T>
Mat<T> scaled_A(const TensorMap<T>& t) {
  return t.at("lora_A").array().colwise() * t.at("lora_E").col(0).array();  // (r, d_in)
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> S = x * scaled_A(t).transpose();  // (N, r)
  Mat<T> y = x * t.at("weight").transpose();      // (N, d_out)
  y.noalias() += s * (S * t.at("lora_B").transpose());
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& A = t.at("lora_A");  // (r, d_in)
  const Mat<T>& E = t.at("lora_E");  // (r, 1)
  const Mat<T>& B = t.at("lora_B");  // (d_out, r)
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> P = scaled_A(t);       // (r, d_in)
  const Mat<T> S = x * P.transpose();  // (N, r)
  const Mat<T> dL = s * dy;            // (N, d_out)
  const Mat<T> dS = dL * B;            // (N, r)
  const Mat<T> dP = dS.transpose() * x;  // (r, d_in)
  Grads<T> g;
  g.dparams["lora_B"] = dL.transpose() * S;                                   // (d_out, r)
  g.dparams["lora_A"] = dP.array().colwise() * E.col(0).array();              // (r, d_in)
  g.dparams["lora_E"] = (dP.array() * A.array()).rowwise().sum().matrix();    // (r, 1)
  g.dx = dy * t.at("weight");  // (N, d_in) base term
  g.dx.noalias() += dS * P;    // adapter term
  return g;
}

}  // namespace gg::adalora
