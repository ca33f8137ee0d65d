// FourierFT on LibTorch, two paths for one ΔW = s · Re(IDFT2(sparse spectrum)), s = scaling / (d_out d_in):
// - thin, while the n entries are few: ΔW = s (Cp diag(c) Cqᵀ − Sp diag(c) Sqᵀ) with the basis tables Cp, Sp
//   (d_out, n) and Cq, Sq (d_in, n) (cos(α + β) = cos α cos β − sin α sin β), applied to X as rank-n products, never
//   formed: 4 N n (d_in + d_out) multiply-adds;
// - dense otherwise: ΔW by an inverse 2-D FFT in the tensors' own precision (PEFT's is float32 always), merged into W
//   so the forward is one GEMM; the spectrum's gradient is the forward FFT of G = dYᵀ X read at the n entries.
#include <ATen/ATen.h>

#include <cmath>
#include <numbers>

#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Spectrum {
  at::Tensor rows, cols;  // (n) int64
  double scale;           // s / (d_out d_in): ifft2's normalisation folded with PEFT's scaling
};

Spectrum spectrum(const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor pos = t.at("indices").to(at::kLong);
  const at::Tensor& W = t.at("weight");
  return {pos[0], pos[1], hp.at("scaling") / double(W.size(0) * W.size(1))};
}

struct Tables {
  at::Tensor row_cos, row_sin, col_cos, col_sin;  // (d_out, n), (d_out, n), (d_in, n), (d_in, n) in W's dtype
};

// cos/sin of 2π (a p mod M) / M and of 2π (b q mod N) / N: phases reduced mod 1 in integers, as the DFT's twiddles
// are, and evaluated in double before the cast.
Tables tables(const Spectrum& sp, const at::Tensor& W) {
  const int64_t M = W.size(0), N = W.size(1);
  const auto phases = [](const at::Tensor& freq, int64_t len) {
    return at::remainder(at::outer(at::arange(len, freq.options()), freq), len).to(at::kDouble) *
           (2.0 * std::numbers::pi / double(len));
  };
  const at::Tensor rows = phases(sp.rows, M), cols = phases(sp.cols, N);
  const auto as = [&](const at::Tensor& v) { return v.to(W.scalar_type()); };
  return {as(rows.cos()), as(rows.sin()), as(cols.cos()), as(cols.sin())};
}

// The thin path costs 4 N n (d_in + d_out) GEMM multiply-adds against the dense path's 2-D FFTs (~5 d_out d_in
// log2(d_out d_in) flops each, at several times less throughput than a GEMM on the CPU) and its base-sized adds.
bool thin(int64_t rows, int64_t n, int64_t M, int64_t N) {
  const double grid = double(M) * double(N);
  return 4.0 * double(rows) * double(n) * double(M + N) < 30.0 * grid * std::log2(grid + 1.0);
}

// W + ΔW, ΔW = s · Re(ifft2(dense spectrum)); "forward" normalisation leaves the 1/(MN) to `scale`.
at::Tensor merged_weight(const TorchTensors& t, const HyperParams& hp) {
  const Spectrum sp = spectrum(t, hp);
  const at::Tensor& W = t.at("weight");
  at::Tensor dense = at::zeros_like(W).index_put_({sp.rows, sp.cols}, t.at("fourierft_spectrum"));
  return W + at::real(at::fft_ifft2(dense, c10::nullopt, {0, 1}, "forward")) * sp.scale;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor& W = t.at("weight");
  const at::Tensor& c = t.at("fourierft_spectrum");
  if (!thin(x.size(0), c.size(0), W.size(0), W.size(1))) {
    const at::Tensor merged = merged_weight(t, hp);
    if (saved) (*saved)["merged"] = merged;  // dX needs it again: one inverse FFT per step, not two
    return at::addmm(t.at("bias"), x, merged.t());
  }
  const Spectrum sp = spectrum(t, hp);
  const Tables tb = tables(sp, W);
  const at::Tensor xc = at::mm(x, tb.col_cos) * c, xs = at::mm(x, tb.col_sin) * c;  // (N, n)
  return at::addmm(t.at("bias"), x, W.t()).add_((at::mm(xc, tb.row_cos.t()) - at::mm(xs, tb.row_sin.t())) * sp.scale);
}

// The numerics policy's naive baseline: ΔW formed densely from the same cosine sum, then one GEMM. The FFT is more
// accurate than any direct sum (the Eigen reference is one), so it cannot be the baseline that every dense
// implementation is held to.
at::Tensor naive_forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const Spectrum sp = spectrum(t, hp);
  const at::Tensor& W = t.at("weight");
  const at::Tensor& c = t.at("fourierft_spectrum");
  const Tables tb = tables(sp, W);
  const at::Tensor dW = at::mm(tb.row_cos * c, tb.col_cos.t()) - at::mm(tb.row_sin * c, tb.col_sin.t());
  return at::addmm(t.at("bias"), x, (W + dW * sp.scale).t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& W = t.at("weight");
  const at::Tensor& c = t.at("fourierft_spectrum");
  const Spectrum sp = spectrum(t, hp);
  TorchGrads g;
  if (thin(x.size(0), c.size(0), W.size(0), W.size(1))) {
    const Tables tb = tables(sp, W);
    const at::Tensor dyc = at::mm(dy, tb.row_cos), dys = at::mm(dy, tb.row_sin);  // (N, n)
    if (request.wants("fourierft_spectrum"))
      g.dparams["fourierft_spectrum"] = (at::mm(x, tb.col_cos) * dyc - at::mm(x, tb.col_sin) * dys).sum(0) * sp.scale;
    if (request.dx)
      g.dx = at::mm(dy, W).add_((at::mm(dyc * c, tb.col_cos.t()) - at::mm(dys * c, tb.col_sin.t())) * sp.scale);
    return g;
  }
  if (request.wants("fourierft_spectrum")) {
    const at::Tensor G = at::mm(dy.t(), x);  // (d_out, d_in)
    g.dparams["fourierft_spectrum"] = at::real(at::fft_fft2(G, c10::nullopt, {0, 1}, "backward")).index({sp.rows, sp.cols}) * sp.scale;
  }
  if (request.dx) g.dx = at::mm(dy, saved_or(saved, "merged", [&] { return merged_weight(t, hp); }));
  return g;
}

}  // namespace

const TorchImpl& fourierft_torch() {
  static const TorchImpl impl{forward, backward, naive_forward};
  return impl;
}

}  // namespace gg
