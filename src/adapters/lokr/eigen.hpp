// LoKr (PEFT LoKrConfig, lokr Linear around nn.Linear), float64/float32 reference with the analytic backward written
// out. The plain, obviously-right form: the Kronecker product is formed densely here (the torch backend never forms
// it, see torch.cpp).
//   d_out = a·b, d_in = c·d  (PEFT's factorization of each dim, see kron_dims)
//   w1 (a, c) = lokr_w1, or lokr_w1_a (a, r) · lokr_w1_b (r, c) when PEFT factors it (use_w1 = 0)
//   w2 (b, d) = lokr_w2, or lokr_w2_a (b, r) · lokr_w2_b (r, d) when PEFT factors it (use_w2 = 0)
//   ΔW = s·(w1 ⊗ w2), ΔW[i·b + k, j·d + l] = s·w1[i, j]·w2[k, l],  s = alpha / r
//   Y  = X Wᵀ + b + X ΔWᵀ
// Backward, with G = dYᵀ X (d_out, d_in) cut into a×c blocks G_ij of shape (b, d):
//   dw1[i, j] = s·Σ_kl G_ij[k, l]·w2[k, l]      dw2 = s·Σ_ij w1[i, j]·G_ij
//   dw1_a = dw1 w1_bᵀ, dw1_b = w1_aᵀ dw1 (same for w2);   dX = dY W + dY ΔW
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/conv_kernel.hpp"
#include "core/registry.hpp"
#include "core/tucker.hpp"

namespace gg::lokr {

// PEFT's factorization(dimension, factor): a divisor pair (m, n), m·n = dimension. A positive factor that divides the
// dimension is taken as m as is; otherwise m walks up the divisors while m < n and m <= factor (factor -1: no bound),
// and the pair is returned smaller first. Matching it exactly matters: it fixes the shapes of PEFT's tensors.
inline std::pair<int64_t, int64_t> factorization(int64_t dimension, int64_t factor) {
  if (factor > 0 && dimension % factor == 0) return {factor, dimension / factor};
  const int64_t bound = factor == -1 ? dimension : factor;
  int64_t m = 1, n = dimension;
  while (m < n) {
    int64_t next = m + 1;
    while (dimension % next != 0) ++next;
    if (next > bound) break;
    m = next;
    n = dimension / next;
  }
  return {std::min(m, n), std::max(m, n)};
}

struct KronDims {
  int64_t a, b, c, d;  // w1 (a, c), w2 (b, d): d_out = a·b, d_in = c·d
  int64_t d_channels;  // d / conv_kernel: w2's input channels (d itself for a Linear)
};

// On a convolution lowered to a Linear (d_in = in_channels · conv_kernel, columns channel-major) PEFT factorizes the
// input channels only and w2 carries the whole kernel: w2 (b, d_channels, *kernel) viewed as (b, d_channels·kernel),
// so ΔW = s·(w1 ⊗ w2) holds on the lowered weight with d = d_channels · conv_kernel.
inline KronDims kron_dims(const Dims& dims, const HyperParams& hp) {
  const auto f = static_cast<int64_t>(hp.at("decompose_factor"));
  const int64_t kernel = conv::kernel(hp);
  const auto [c, d_channels] = factorization(dims.d_in / kernel, f);
  const auto [a, b] = factorization(dims.d_out, f);
  return {a, b, c, d_channels * kernel, d_channels};
}

inline double scaling(const HyperParams& hp) { return hp.at("alpha") / hp.at("r"); }
inline bool tucker_form(const HyperParams& hp) { return hp.at("use_effective_conv2d") != 0.0; }
inline int64_t conv_kernel(const HyperParams& hp) { return conv::kernel(hp); }

// w1 and w2, formed from their factors where PEFT factors them.
template <class T>
Mat<T> w1(const TensorMap<T>& t, const HyperParams& hp) {
  return hp.at("use_w1") != 0.0 ? t.at("lokr_w1") : Mat<T>(t.at("lokr_w1_a") * t.at("lokr_w1_b"));
}
template <class T>
Mat<T> w2(const TensorMap<T>& t, const HyperParams& hp) {
  if (hp.at("use_w2") != 0.0) return t.at("lokr_w2");
  if (tucker_form(hp)) return tucker::rebuild(t.at("lokr_t2"), t.at("lokr_w2_a"), t.at("lokr_w2_b"), conv_kernel(hp));
  return t.at("lokr_w2_a") * t.at("lokr_w2_b");
}

template <class T>
Mat<T> kron(const Mat<T>& p, const Mat<T>& q) {
  Mat<T> out(p.rows() * q.rows(), p.cols() * q.cols());
  for (int64_t i = 0; i < p.rows(); ++i)
    for (int64_t j = 0; j < p.cols(); ++j) out.block(i * q.rows(), j * q.cols(), q.rows(), q.cols()) = p(i, j) * q;
  return out;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T> dW = static_cast<T>(scaling(hp)) * kron(w1(t, hp), w2(t, hp));
  Mat<T> y = x * (t.at("weight") + dW).transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const T s = static_cast<T>(scaling(hp));
  const Mat<T> W1 = w1(t, hp), W2 = w2(t, hp);
  const int64_t b = W2.rows(), d = W2.cols();
  const Mat<T> G = dy.transpose() * x;  // (d_out, d_in)
  Mat<T> dW1(W1.rows(), W1.cols());
  Mat<T> dW2 = Mat<T>::Zero(b, d);
  for (int64_t i = 0; i < W1.rows(); ++i)
    for (int64_t j = 0; j < W1.cols(); ++j) {
      const Mat<T> Gij = G.block(i * b, j * d, b, d);
      dW1(i, j) = s * (Gij.array() * W2.array()).sum();
      dW2 += s * W1(i, j) * Gij;
    }
  Grads<T> g;
  if (hp.at("use_w1") != 0.0) {
    g.dparams["lokr_w1"] = dW1;
  } else {
    g.dparams["lokr_w1_a"] = dW1 * t.at("lokr_w1_b").transpose();
    g.dparams["lokr_w1_b"] = t.at("lokr_w1_a").transpose() * dW1;
  }
  if (hp.at("use_w2") != 0.0) {
    g.dparams["lokr_w2"] = dW2;
  } else if (tucker_form(hp)) {
    tucker::Grads<T> tg = tucker::backward(dW2, t.at("lokr_t2"), t.at("lokr_w2_a"), t.at("lokr_w2_b"), conv_kernel(hp));
    g.dparams["lokr_t2"] = std::move(tg.dcore);
    g.dparams["lokr_w2_a"] = std::move(tg.da);
    g.dparams["lokr_w2_b"] = std::move(tg.db);
  } else {
    g.dparams["lokr_w2_a"] = dW2 * t.at("lokr_w2_b").transpose();
    g.dparams["lokr_w2_b"] = t.at("lokr_w2_a").transpose() * dW2;
  }
  g.dx = dy * (t.at("weight") + s * kron(W1, W2));
  return g;
}

}  // namespace gg::lokr
