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
// With use_effective_conv2d (a convolution's Tucker form, core/tucker.hpp) each M is rebuilt from a core over the
// kernel positions instead: M1 = tucker(t1, w1a (r, d_out), w1b (r, in_channels)), and dM1, dM2 go back through
// tucker::backward.
#pragma once
#include "core/conv_kernel.hpp"
#include "core/registry.hpp"
#include "core/tucker.hpp"

namespace gg::loha {

inline double scaling(const HyperParams& hp) { return hp.at("alpha") / hp.at("r"); }
inline bool tucker_form(const HyperParams& hp) { return hp.at("use_effective_conv2d") != 0.0; }
inline int64_t conv_kernel(const HyperParams& hp) { return conv::kernel(hp); }

// M1 (side "1") or M2 (side "2"): (d_out, d_in)
template <class T>
Mat<T> factor(const TensorMap<T>& t, const HyperParams& hp, const std::string& side) {
  const Mat<T>& a = t.at("hada_w" + side + "_a");
  const Mat<T>& b = t.at("hada_w" + side + "_b");
  if (tucker_form(hp)) return tucker::rebuild(t.at("hada_t" + side), a, b, conv_kernel(hp));
  return a * b;
}

// dL/dM of one side to that side's tensors.
template <class T>
void factor_grads(const TensorMap<T>& t, const HyperParams& hp, const std::string& side, const Mat<T>& dM,
                  Grads<T>& g) {
  const std::string a = "hada_w" + side + "_a", b = "hada_w" + side + "_b";
  if (tucker_form(hp)) {
    tucker::Grads<T> tg = tucker::backward(dM, t.at("hada_t" + side), t.at(a), t.at(b), conv_kernel(hp));
    g.dparams["hada_t" + side] = std::move(tg.dcore);
    g.dparams[a] = std::move(tg.da);
    g.dparams[b] = std::move(tg.db);
    return;
  }
  g.dparams[a] = dM * t.at(b).transpose();  // (d_out, r)
  g.dparams[b] = t.at(a).transpose() * dM;  // (r, d_in)
}

template <class T>
Mat<T> delta_weight(const TensorMap<T>& t, const HyperParams& hp) {
  const T s = static_cast<T>(scaling(hp));
  return s * (factor(t, hp, "1").array() * factor(t, hp, "2").array()).matrix();  // (d_out, d_in)
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  Mat<T> y = x * (t.at("weight") + delta_weight(t, hp)).transpose();  // (N, d_out)
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> M1 = factor(t, hp, "1");                          // (d_out, d_in)
  const Mat<T> M2 = factor(t, hp, "2");                          // (d_out, d_in)
  const Mat<T> G = s * (dy.transpose() * x);                     // (d_out, d_in)
  Grads<T> g;
  factor_grads(t, hp, "1", Mat<T>((G.array() * M2.array()).matrix()), g);
  factor_grads(t, hp, "2", Mat<T>((G.array() * M1.array()).matrix()), g);
  const Mat<T> dW = s * (M1.array() * M2.array()).matrix();  // ΔW (d_out, d_in)
  g.dx = dy * (t.at("weight") + dW);                         // (N, d_in): base + adapter term
  return g;
}

}  // namespace gg::loha
