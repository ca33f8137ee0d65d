// FourierFT (PEFT FourierFTConfig, FourierFTLinear around nn.Linear), float64/float32 reference with the analytic
// backward. n fixed spectrum entries (a_k, b_k) of the (d_out, d_in) frequency grid (`indices`, frozen positions),
// coefficients c (n) trainable; ΔW is the real part of the inverse 2-D DFT of that sparse spectrum, times `scaling`:
//   ΔW[p, q] = s / (d_out d_in) Σ_k c_k cos 2π (a_k p / d_out + b_k q / d_in)
//   Y = X (W + ΔW)ᵀ + b
// Backward:  G = dYᵀ X (d_out, d_in);  dc_k = s / (d_out d_in) Σ_{p,q} G[p, q] cos 2π (…);  dX = dY (W + ΔW)
// The reference forms ΔW densely from the cosine sum (plainly right, O(d_out d_in n)); phases are reduced mod 1 in
// integers first, as the DFT's own twiddle factors are, so no large argument reaches cos.
#pragma once
#include <numbers>

#include "core/linear.hpp"
#include "core/registry.hpp"

namespace gg::fourierft {

// The basis tables of the n entries: cos and sin of 2π a_k p / M for every row p (n x M), and of 2π b_k q / N for
// every column q (n x N), phases reduced mod 1 in integers first. The basis image of entry k is
// cos(α + β) = cos α cos β − sin α sin β: one outer product of table rows each, with no trigonometry per (p, q).
struct Tables {
  Mat<double> row_cos, row_sin, col_cos, col_sin;
};

template <class T>
Tables tables(const Mat<T>& pos, int64_t M, int64_t N) {
  const int64_t n = pos.cols();
  Tables t{Mat<double>(n, M), Mat<double>(n, M), Mat<double>(n, N), Mat<double>(n, N)};
  const auto fill = [](Mat<double>& c, Mat<double>& s, int64_t k, int64_t freq, int64_t len) {
    for (int64_t i = 0; i < len; ++i) {
      const double angle = 2.0 * std::numbers::pi * double((freq * i) % len) / double(len);
      c(k, i) = std::cos(angle);
      s(k, i) = std::sin(angle);
    }
  };
  for (int64_t k = 0; k < n; ++k) {
    fill(t.row_cos, t.row_sin, k, static_cast<int64_t>(pos(0, k)), M);
    fill(t.col_cos, t.col_sin, k, static_cast<int64_t>(pos(1, k)), N);
  }
  return t;
}

// Sums accumulate in double whatever T is: a plain sum over the n entries (and in the backward over the d_out · d_in
// weight) grows its rounding error with the count, where the FFT's grows with its logarithm; the reference must not
// be the least accurate implementation in the comparison.
template <class T>
Mat<T> delta_weight(const TensorMap<T>& t, const HyperParams& hp, int64_t M, int64_t N) {
  const Tables b = tables(t.at("indices"), M, N);
  const Eigen::RowVectorXd c = t.at("fourierft_spectrum").row(0).template cast<double>();
  const double s = hp.at("scaling") / double(M * N);
  const Mat<double> dw = (b.row_cos.transpose() * c.asDiagonal() * b.col_cos - b.row_sin.transpose() * c.asDiagonal() * b.col_sin) * s;
  return dw.cast<T>();
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const Mat<T>& W = t.at("weight");
  return linear::forward_with_delta(x, t, delta_weight(t, hp, W.rows(), W.cols()));
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");
  const int64_t M = W.rows(), N = W.cols();
  const Mat<double> G = (dy.transpose() * x).template cast<double>();  // (d_out, d_in)
  const Tables b = tables(t.at("indices"), M, N);
  // dc_k = s Σ_{p,q} G[p,q] (cos α_p cos β_q − sin α_p sin β_q): row k of (tables · G) against the column tables
  const Mat<double> dc = ((b.row_cos * G).cwiseProduct(b.col_cos) - (b.row_sin * G).cwiseProduct(b.col_sin)).rowwise().sum().transpose() *
                         (hp.at("scaling") / double(M * N));
  Grads<T> g;
  g.dparams["fourierft_spectrum"] = dc.cast<T>();
  g.dx = dy * (W + delta_weight(t, hp, M, N));
  return g;
}

}  // namespace gg::fourierft
