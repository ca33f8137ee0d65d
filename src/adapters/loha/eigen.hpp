// LoHa (PEFT LoHaConfig, loha Linear around nn.Linear), float64/float32 reference with the analytic backward written
// out. The plain, obviously-right form: the Hadamard product of two rank-r products is formed densely here (the torch
// backend never forms it, see torch.cpp).
//   M1 = w1a w1b             (d_out, d_in)   w1a (d_out, r), w1b (r, d_in)
//   M2 = w2a w2b             (d_out, d_in)   w2a (d_out, r), w2b (r, d_in)
//   ΔW = s·M1 ⊙ M2           (d_out, d_in)   s = alpha / r (PEFT: self.scaling = alpha / r)
//   Y  = X Wᵀ + b + X ΔWᵀ    (N, d_out)
// Backward (PEFT's HadaWeight.backward, plus the X side):
//   G   = s·dYᵀ X            (d_out, d_in)   gradient w.r.t. M1 ⊙ M2
//   dM1 = G ⊙ M2;  dw1a = dM1 w1bᵀ (d_out, r);  dw1b = w1aᵀ dM1 (r, d_in)
//   dM2 = G ⊙ M1;  dw2a = dM2 w2bᵀ (d_out, r);  dw2b = w2aᵀ dM2 (r, d_in)
//   dX  = dY W + dY ΔW       (N, d_in)       base term + adapter term
#pragma once
#include "core/registry.hpp"

namespace gg::loha {

inline double scaling(const HyperParams& hp) { return hp.at("alpha") / hp.at("r"); }

template <class T>
Mat<T> delta_weight(const TensorMap<T>& t, const HyperParams& hp) {
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> M1 = t.at("hada_w1_a") * t.at("hada_w1_b");  // (d_out, d_in)
  const Mat<T> M2 = t.at("hada_w2_a") * t.at("hada_w2_b");  // (d_out, d_in)
  return s * (M1.array() * M2.array()).matrix();             // (d_out, d_in)
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  Mat<T> y = x * (t.at("weight") + delta_weight(t, hp)).transpose();  // (N, d_out)
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& w1a = t.at("hada_w1_a");  // (d_out, r)
  const Mat<T>& w1b = t.at("hada_w1_b");  // (r, d_in)
  const Mat<T>& w2a = t.at("hada_w2_a");  // (d_out, r)
  const Mat<T>& w2b = t.at("hada_w2_b");  // (r, d_in)
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> M1 = w1a * w1b;                                   // (d_out, d_in)
  const Mat<T> M2 = w2a * w2b;                                   // (d_out, d_in)
  const Mat<T> G = s * (dy.transpose() * x);                     // (d_out, d_in)
  const Mat<T> dM1 = (G.array() * M2.array()).matrix();          // (d_out, d_in)
  const Mat<T> dM2 = (G.array() * M1.array()).matrix();          // (d_out, d_in)
  Grads<T> g;
  g.dparams["hada_w1_a"] = dM1 * w1b.transpose();  // (d_out, r)
  g.dparams["hada_w1_b"] = w1a.transpose() * dM1;  // (r, d_in)
  g.dparams["hada_w2_a"] = dM2 * w2b.transpose();  // (d_out, r)
  g.dparams["hada_w2_b"] = w2a.transpose() * dM2;  // (r, d_in)
  const Mat<T> dW = s * (M1.array() * M2.array()).matrix();  // ΔW (d_out, d_in)
  g.dx = dy * (t.at("weight") + dW);                         // (N, d_in): base + adapter term
  return g;
}

}  // namespace gg::loha
