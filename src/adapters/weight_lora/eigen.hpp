// weight_lora (the user's PEFT fork): LoRA with a learnable scalar gate w, factors stored input-major.
//   S = X A                 (N, r)      A is (d_in, r)
//   Y = X Wᵀ + b + s·w·S B  (N, d_out)  B is (r, d_out)
// The fork forms ΔW = s·w·(A B)ᵀ densely and runs a second full matmul; this path never does.
#pragma once
#include "core/lowrank.hpp"

namespace gg::weight_lora {

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const T sw = static_cast<T>(lowrank::scaling(hp)) * t.at("weight_lora_w")(0, 0);
  const Mat<T> S = x * t.at("weight_lora_A");  // (N, r)
  Mat<T> y = x * t.at("weight").transpose();   // (N, d_out)
  y.noalias() += sw * (S * t.at("weight_lora_B"));
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& A = t.at("weight_lora_A");  // (d_in, r)
  const Mat<T>& B = t.at("weight_lora_B");  // (r, d_out)
  const T s = static_cast<T>(lowrank::scaling(hp));
  const T w = t.at("weight_lora_w")(0, 0);
  const Mat<T> S = x * A;            // (N, r)
  const Mat<T> dyBt = dy * B.transpose();  // (N, r): dY projected onto the rank-r space, shared by dw and dS
  Grads<T> g;
  // dw = s·Σ dY ⊙ (S B) = s·Σ (dY Bᵀ) ⊙ S: computed in the rank-r space, never at (N, d_out).
  g.dparams["weight_lora_w"] = Mat<T>::Constant(1, 1, s * (dyBt.array() * S.array()).sum());
  g.dparams["weight_lora_B"] = (s * w) * (S.transpose() * dy);  // (r, d_out)
  const Mat<T> dS = (s * w) * dyBt;                             // (N, r)
  g.dparams["weight_lora_A"] = x.transpose() * dS;              // (d_in, r)
  g.dx = dy * t.at("weight");                                   // (N, d_in) base term
  g.dx.noalias() += dS * A.transpose();                         // adapter term
  return g;
}

}  // namespace gg::weight_lora
