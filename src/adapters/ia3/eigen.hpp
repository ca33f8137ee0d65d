// (IA)³ (PEFT IA3Config, ia3 Linear), float64/float32 reference with the analytic backward written out. One learned
// vector l rescales either the layer's output (bias included, as PEFT multiplies base_layer(x)) or its input:
//   is_feedforward = 0:  Z = X Wᵀ + b      (N, d_out)
//                        Y = Z ⊙ l         (N, d_out)   l (d_out) broadcast over rows
//   is_feedforward = 1:  U = X ⊙ l         (N, d_in)    l (d_in) broadcast over rows
//                        Y = U Wᵀ + b      (N, d_out)
// Backward:
//   output: dZ = dY ⊙ l   (N, d_out);  dl = Σ_rows dY ⊙ Z  (d_out);  dX = dZ W    (N, d_in)
//   input:  dU = dY W     (N, d_in);   dl = Σ_rows dU ⊙ X  (d_in);   dX = dU ⊙ l  (N, d_in)
// On a convolution lowered to a Linear (d_in = in_channels · K, K = conv_kernel, columns channel-major) the input
// form has one value per channel: l (in_channels) acts as its K-fold repetition l⁺ (d_in), dl sums each channel's K
// columns (the adjoint of the repetition). K = 1 for a Linear.
#pragma once
#include "core/conv_kernel.hpp"
#include "core/registry.hpp"

namespace gg::ia3 {

inline bool feedforward(const HyperParams& hp) { return hp.at("is_feedforward") != 0.0; }
inline int64_t conv_kernel(const HyperParams& hp) { return conv::kernel(hp); }

// l⁺ (1, C·K): each of l's C values repeated K times.
template <class T>
Mat<T> repeat_per_channel(const Mat<T>& l, int64_t k) {
  Mat<T> out(1, l.cols() * k);
  for (int64_t c = 0; c < l.cols(); ++c) out.block(0, c * k, 1, k).setConstant(l(0, c));
  return out;
}

// The adjoint: (1, C·K) -> (1, C), each channel's K entries summed.
template <class T>
Mat<T> sum_per_channel(const Mat<T>& v, int64_t k) {
  Mat<T> out(1, v.cols() / k);
  for (int64_t c = 0; c < out.cols(); ++c) out(0, c) = v.block(0, c * k, 1, k).sum();
  return out;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& W = t.at("weight");  // (d_out, d_in)
  const Mat<T>& l = t.at("ia3_l");   // (1, d_out) or (1, d_in)
  Mat<T> y;
  if (feedforward(hp)) {
    const Mat<T> lx = repeat_per_channel(l, conv_kernel(hp));  // (1, d_in)
    const Mat<T> U = x.array().rowwise() * lx.row(0).array();  // (N, d_in)
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
    const int64_t k = conv_kernel(hp);
    const Mat<T> dU = dy * W;                                                  // (N, d_in)
    const Mat<T> dlx = (dU.array() * x.array()).colwise().sum().matrix();      // (1, d_in)
    g.dparams["ia3_l"] = sum_per_channel(dlx, k);                              // (1, d_in / K)
    g.dx = dU.array().rowwise() * repeat_per_channel(l, k).row(0).array();     // (N, d_in)
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
