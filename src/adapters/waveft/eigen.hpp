// WaveFT (PEFT WaveFTConfig, WaveFTLinear around nn.Linear), float64/float32 reference with the analytic backward.
// n fixed entries (waveft_indices, frozen positions) of the weight grid carry trainable coefficients c (n). With
// use_idwt (the default) they are wavelet coefficients and ΔW is their single-level inverse 2-D wavelet transform,
// exactly as PEFT builds it (waveft/layer.py get_delta_weight + waverec2d):
//   D = zeros(Hp, Wp), Hp = d_out + (L − 2) rounded up to even (Wp likewise), entry k at (p_k + ⌊(Hp − d_out)/2⌋, …)
//   subbands of D: cA = D[:Hp/2, :Wp/2], cH = D[:Hp/2, Wp/2:], cV = D[Hp/2:, :Wp/2], cD = D[Hp/2:, Wp/2:]
//   R[2i + a, 2j + b] += cA[i,j] lo[a] lo[b] + cH[i,j] hi[a] lo[b] + cV[i,j] lo[a] hi[b] + cD[i,j] hi[a] hi[b]
//     (so an entry in D's top-right quadrant is filtered by hi along R's rows: quadrant and filter axes cross)
//     (conv_transpose2d, stride 2, with the outer products of the reconstruction filters lo = rec_lo, hi = rec_hi)
//   R cropped by (2L − 3) // 2 on every side, then its centred d_out x d_in block: ΔW = scaling · that block
// Without use_idwt, ΔW = scaling · D (the coefficients are ΔW's own entries). Y = X (W + ΔW)ᵀ + b.
// ΔW is linear in c, so dc_k = scaling · ⟨basis image of entry k, G⟩ with G = dYᵀ X; dX = dY (W + ΔW).
// The wavelet is Haar (PEFT's default db1): lo = (1, 1)/√2, hi = (1, −1)/√2 — exact constants, from haar() below,
// the one source of filters for both backends; the transform code takes any filter pair and length (another family
// needs its coefficients, a hyper-parameter to choose it, and its PEFT padding rule checked).
#pragma once
#include <cmath>
#include <vector>

#include "core/linear.hpp"
#include "core/registry.hpp"

namespace gg::waveft {

struct Filters {
  std::vector<double> lo, hi;  // rec_lo, rec_hi (hi[i] = (−1)^i lo[L − 1 − i], PyWavelets' convention)
};

inline Filters haar() {
  const double h = 1.0 / std::sqrt(2.0);
  return {{h, h}, {h, -h}};
}

// Where entry (p, q) of the d_out x d_in grid lands in the transform, and which rows/cols of ΔW its basis image
// covers: the geometry shared by the forward and the backward.
struct Geometry {
  int64_t M, N;              // d_out, d_in
  int64_t Hp, Wp;            // padded spectrum
  int64_t row_offset, col_offset;
  int64_t crop_r, crop_c;    // first row/col of R (after the (2L−3)//2 trim) that is ΔW's row/col 0
  int64_t L;

  Geometry(int64_t d_out, int64_t d_in, int64_t filter_length) : M(d_out), N(d_in), L(filter_length) {
    const auto padded = [&](int64_t n) { const int64_t p = n + (L - 2); return p + (p % 2); };
    Hp = padded(M);
    Wp = padded(N);
    row_offset = (Hp - M) / 2;
    col_offset = (Wp - N) / 2;
    const int64_t trim = (2 * L - 3) / 2;
    const int64_t rows = 2 * (Hp / 2 - 1) + L - 2 * trim, cols = 2 * (Wp / 2 - 1) + L - 2 * trim;
    crop_r = trim + (rows - M) / 2;
    crop_c = trim + (cols - N) / 2;
  }
};

// Calls f(row, col, weight) for every non-zero of the basis image of grid entry (p, q) in ΔW's frame (before
// scaling): the subband's two filters, placed at twice the subband index and shifted by the crops.
template <class F>
void basis(const Geometry& g, const Filters& filt, int64_t p, int64_t q, F&& f) {
  const int64_t P = p + g.row_offset, Q = q + g.col_offset, h2 = g.Hp / 2, w2 = g.Wp / 2;
  // PEFT pairs the top-right quadrant (its cH) with outer(hi, lo) and the bottom-left (cV) with outer(lo, hi): the
  // filter along ΔW's rows is chosen by the entry's column half, and the other way round.
  const std::vector<double>& row_filter = Q < w2 ? filt.lo : filt.hi;
  const std::vector<double>& col_filter = P < h2 ? filt.lo : filt.hi;
  const int64_t i = P < h2 ? P : P - h2, j = Q < w2 ? Q : Q - w2;
  for (int64_t a = 0; a < g.L; ++a) {
    const int64_t row = 2 * i + a - g.crop_r;
    if (row < 0 || row >= g.M) continue;
    for (int64_t b = 0; b < g.L; ++b) {
      const int64_t col = 2 * j + b - g.crop_c;
      if (col >= 0 && col < g.N) f(row, col, row_filter[size_t(a)] * col_filter[size_t(b)]);
    }
  }
}

inline bool use_idwt(const HyperParams& hp) { return hp.at("use_idwt") != 0.0; }

// Calls f(k, row, col, weight) for every non-zero of every entry's basis image (the identity without use_idwt).
template <class T, class F>
void for_each_basis(const Mat<T>& pos, const HyperParams& hp, int64_t M, int64_t N, F&& f) {
  const Geometry g(M, N, 2);
  const Filters filt = haar();
  for (int64_t k = 0; k < pos.cols(); ++k) {
    const auto p = static_cast<int64_t>(pos(0, k)), q = static_cast<int64_t>(pos(1, k));
    if (!use_idwt(hp)) {
      f(k, p, q, 1.0);
      continue;
    }
    basis(g, filt, p, q, [&](int64_t row, int64_t col, double w) { f(k, row, col, w); });
  }
}

template <class T>
Mat<T> delta_weight(const TensorMap<T>& t, const HyperParams& hp, int64_t M, int64_t N) {
  const Mat<T>& c = t.at("waveft_spectrum");
  const T s = T(hp.at("scaling"));
  Mat<T> dw = Mat<T>::Zero(M, N);
  for_each_basis(t.at("waveft_indices"), hp, M, N,
                 [&](int64_t k, int64_t row, int64_t col, double w) { dw(row, col) += s * T(w) * c(0, k); });
  return dw;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& W = t.at("weight");
  return linear::forward_with_delta(x, t, delta_weight(t, hp, W.rows(), W.cols()));
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");
  const Mat<T> G = dy.transpose() * x;  // (d_out, d_in)
  const T s = T(hp.at("scaling"));
  Mat<T> dc = Mat<T>::Zero(1, t.at("waveft_spectrum").cols());
  for_each_basis(t.at("waveft_indices"), hp, W.rows(), W.cols(),
                 [&](int64_t k, int64_t row, int64_t col, double w) { dc(0, k) += s * T(w) * G(row, col); });
  Grads<T> g;
  g.dparams["waveft_spectrum"] = std::move(dc);
  g.dx = dy * (W + delta_weight(t, hp, W.rows(), W.cols()));
  return g;
}

}  // namespace gg::waveft
