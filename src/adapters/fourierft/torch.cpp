// FourierFT on LibTorch: ΔW by an inverse 2-D FFT of the sparse spectrum in the tensors' own precision (PEFT's is
// float32 always), merged into W so the forward is one GEMM; the spectrum's gradient is the forward FFT of
// G = dYᵀ X read at the n entries (Re Σ G e^{-iθ} = Σ G cos θ).
#include <ATen/ATen.h>

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

// W + ΔW, ΔW = s · Re(ifft2(dense spectrum)); "forward" normalisation leaves the 1/(MN) to `scale`.
at::Tensor merged_weight(const TorchTensors& t, const HyperParams& hp) {
  const Spectrum sp = spectrum(t, hp);
  const at::Tensor& W = t.at("weight");
  at::Tensor dense = at::zeros_like(W).index_put_({sp.rows, sp.cols}, t.at("fourierft_spectrum"));
  return W + at::real(at::fft_ifft2(dense, c10::nullopt, {0, 1}, "forward")) * sp.scale;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors*) {
  return at::addmm(t.at("bias"), x, merged_weight(t, hp).t());
}

// The numerics policy's naive baseline: ΔW by the plain cosine sum of its definition, cos(α + β) = cos α cos β −
// sin α sin β over the n entries (two rank-n products), with phases reduced mod 1 in integers as the DFT's twiddles
// are. The FFT forward is more accurate than any direct sum (the Eigen reference is one), so it cannot be the
// baseline that every dense implementation is held to.
at::Tensor naive_forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const Spectrum sp = spectrum(t, hp);
  const at::Tensor& W = t.at("weight");
  const int64_t M = W.size(0), N = W.size(1);
  const double two_pi = 2.0 * 3.14159265358979323846;
  const at::Tensor rows = at::remainder(at::outer(at::arange(M, sp.rows.options()), sp.rows), M).to(at::kDouble) * (two_pi / double(M));
  const at::Tensor cols = at::remainder(at::outer(at::arange(N, sp.cols.options()), sp.cols), N).to(at::kDouble) * (two_pi / double(N));
  const auto as = [&](const at::Tensor& v) { return v.to(W.scalar_type()); };  // (M, n), (N, n) tables in x's dtype
  const at::Tensor& c = t.at("fourierft_spectrum");
  const at::Tensor dW = at::mm(as(rows.cos()) * c, as(cols.cos()).t()) - at::mm(as(rows.sin()) * c, as(cols.sin()).t());
  return at::addmm(t.at("bias"), x, (W + dW * sp.scale).t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  TorchGrads g;
  if (request.wants("fourierft_spectrum")) {
    const Spectrum sp = spectrum(t, hp);
    const at::Tensor G = at::mm(dy.t(), x);  // (d_out, d_in)
    g.dparams["fourierft_spectrum"] = at::real(at::fft_fft2(G, c10::nullopt, {0, 1}, "backward")).index({sp.rows, sp.cols}) * sp.scale;
  }
  if (request.dx) g.dx = at::mm(dy, merged_weight(t, hp));
  return g;
}

}  // namespace

const TorchImpl& fourierft_torch() {
  static const TorchImpl impl{forward, backward, naive_forward};
  return impl;
}

}  // namespace gg
