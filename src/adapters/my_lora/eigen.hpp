// my_lora: LoRA with a per-rank trainable gate g, the template a user copies for their own adapter. KaSA has the same
// maths with its gate under another name (lora_diag), so the gate's registry name is a template parameter.
//   S = X Aᵀ               (N, r)
//   G = S ⊙ g              (N, r)   g broadcast over rows
//   Y = X Wᵀ + b + s·G Bᵀ  (N, d_out)
#pragma once
#include "core/lowrank.hpp"

namespace gg::my_lora {

inline constexpr char kGate[] = "lora_gate";

template <class T, const char* Gate = kGate>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> S = x * t.at("lora_A").transpose();                     // (N, r)
  const Mat<T> G = S.array().rowwise() * t.at(Gate).row(0).array();  // (N, r)
  Mat<T> y = x * t.at("weight").transpose();                           // (N, d_out)
  y.noalias() += s * (G * t.at("lora_B").transpose());
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T, const char* Gate = kGate>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& A = t.at("lora_A");     // (r, d_in)
  const Mat<T>& B = t.at("lora_B");     // (d_out, r)
  const Mat<T>& gate = t.at(Gate);  // (1, r)
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> S = x * A.transpose();                          // (N, r)
  const Mat<T> G = S.array().rowwise() * gate.row(0).array();  // (N, r)
  const Mat<T> dG = s * (dy * B);                              // (N, r)
  Grads<T> out;
  out.dparams["lora_B"] = s * (dy.transpose() * G);                          // (d_out, r)
  out.dparams[Gate] = (dG.array() * S.array()).colwise().sum();       // (1, r)
  const Mat<T> dS = dG.array().rowwise() * gate.row(0).array();              // (N, r)
  out.dparams["lora_A"] = dS.transpose() * x;                                // (r, d_in)
  out.dx = dy * t.at("weight");                                              // (N, d_in) base term
  out.dx.noalias() += dS * A;                                                // adapter term
  return out;
}

}  // namespace gg::my_lora
