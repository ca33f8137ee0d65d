// (IA)³ (PEFT IA3Config, ia3 Linear), float64/float32 reference with the analytic backward written out. One learned
// vector l rescales either the layer's output (bias included, as PEFT multiplies base_layer(x)) or its input:
//   is_feedforward = 0:  Z = X Wᵀ + b      (N, d_out)
//                        Y = Z ⊙ l         (N, d_out)   l (d_out) broadcast over rows
//   is_feedforward = 1:  U = X ⊙ l         (N, d_in)    l (d_in) broadcast over rows
//                        Y = U Wᵀ + b      (N, d_out)
// Backward:
//   output: dZ = dY ⊙ l   (N, d_out);  dl = Σ_rows dY ⊙ Z  (d_out);  dX = dZ W    (N, d_in)
//   input:  dU = dY W     (N, d_in);   dl = Σ_rows dU ⊙ X  (d_in);   dX = dU ⊙ l  (N, d_in)
#pragma once
#include "core/registry.hpp"

namespace gg::ia3 {

inline bool feedforward(const HyperParams& hp) { return hp.at("is_feedforward") != 0.0; }

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& W = t.at("weight");  // (d_out, d_in)
  const Mat<T>& l = t.at("ia3_l");   // (1, d_out) or (1, d_in)
  Mat<T> y;
  if (feedforward(hp)) {
    const Mat<T> U = x.array().rowwise() * l.row(0).array();  // (N, d_in)
    y = U * W.transpose();                                     // (N, d_out)
    y.rowwise() += t.at("bias").row(0);
  } else {
    y = x * W.transpose();  // Z (N, d_out)
    y.rowwise() += t.at("bias").row(0);
    y.array().rowwise() *= l.row(0).array();
  }
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");  // (d_out, d_in)
  const Mat<T>& l = t.at("ia3_l");   // (1, d_out) or (1, d_in)
  Grads<T> g;
  if (feedforward(hp)) {
    const Mat<T> dU = dy * W;                                                  // (N, d_in)
    g.dparams["ia3_l"] = (dU.array() * x.array()).colwise().sum().matrix();    // (1, d_in)
    g.dx = dU.array().rowwise() * l.row(0).array();                            // (N, d_in)
  } else {
    Mat<T> Z = x * W.transpose();  // (N, d_out)
    Z.rowwise() += t.at("bias").row(0);
    g.dparams["ia3_l"] = (dy.array() * Z.array()).colwise().sum().matrix();    // (1, d_out)
    const Mat<T> dZ = dy.array().rowwise() * l.row(0).array();                 // (N, d_out)
    g.dx = dZ * W;                                                             // (N, d_in)
  }
  return g;
}

}  // namespace gg::ia3
