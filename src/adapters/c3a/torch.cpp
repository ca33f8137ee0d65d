// C3A on LibTorch: the block circulants are diagonal in the Fourier basis, so each (i, j) block costs one complex
// multiply per frequency instead of a B x B product; ΔW is never formed. With real FFTs over each block of B columns
// (F = B/2 + 1 frequencies; X̂ = rfft(X) per input block, K̂ = rfft(K)):
//   forward  Ŷ_i[f] = Σ_j conj(K̂_ij[f]) X̂_j[f]   (cross-correlation)        Y_i = irfft(Ŷ_i) / d_in
//   dX       dX̂_j[f] = Σ_i K̂_ij[f] dŶ_i[f]        (its adjoint: convolution)  dX_j = irfft(dX̂_j) / d_in
//   dK       dK̂_ij[f] = Σ_N conj(dŶ_i[f]) X̂_j[f]  (correlation of dY with X)  dK = irfft(dK̂) / d_in
// Per frequency these are (N, n) x (n, m) complex GEMMs, batched over f.
#include <ATen/ATen.h>

#include "adapters/c3a/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

// (N, k·B) real -> (F, N, k) complex: the spectrum of every block, frequency-major for batched GEMMs.
at::Tensor block_spectrum(const at::Tensor& m, int64_t block) {
  return at::fft_rfft(m.view({m.size(0), m.size(1) / block, block}), c10::nullopt, -1).permute({2, 0, 1});
}

// (F, N, k) complex -> (N, k·B) real.
at::Tensor from_spectrum(const at::Tensor& s, int64_t block) {
  const at::Tensor blocks = at::fft_irfft(s.permute({1, 2, 0}), block, -1);  // (N, k, B)
  return blocks.reshape({blocks.size(0), blocks.size(1) * block});
}

at::Tensor kernel_spectrum(const at::Tensor& K) { return at::fft_rfft(K, c10::nullopt, -1).permute({2, 0, 1}); }  // (F, m, n)

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const auto block = static_cast<int64_t>(hp.at("block_size"));
  const at::Tensor X = block_spectrum(x, block);  // (F, N, n)
  if (saved) (*saved)["X_hat"] = X;
  const at::Tensor Y = at::bmm(X, kernel_spectrum(t.at("c3a_kernel")).conj().transpose(1, 2).resolve_conj());  // (F, N, m)
  return at::addmm(t.at("bias"), x, t.at("weight").t()).add_(from_spectrum(Y, block), 1.0 / x.size(1));
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const auto block = static_cast<int64_t>(hp.at("block_size"));
  const double norm = 1.0 / x.size(1);
  const at::Tensor G = block_spectrum(dy, block);  // (F, N, m)
  TorchGrads g;
  if (request.wants("c3a_kernel")) {
    const at::Tensor X = saved_or(saved, "X_hat", [&] { return block_spectrum(x, block); });
    const at::Tensor dK = at::bmm(G.conj().transpose(1, 2).resolve_conj(), X);  // (F, m, n)
    g.dparams["c3a_kernel"] = at::fft_irfft(dK.permute({1, 2, 0}), block, -1).mul_(norm);
  }
  if (request.dx) {
    const at::Tensor dX = at::bmm(G, kernel_spectrum(t.at("c3a_kernel")));  // (F, N, n)
    g.dx = from_spectrum(dX, block).mul_(norm).addmm_(dy, t.at("weight"));
  }
  return g;
}

// The naive baseline: ΔW formed densely (PEFT's get_delta_weight path), same precision.
at::Tensor naive(const at::Tensor& x, const TorchTensors& t, const HyperParams&) {
  const at::Tensor& K = t.at("c3a_kernel");  // (m, n, B)
  const int64_t B = K.size(2), m = K.size(0), n = K.size(1);
  const at::Tensor ts = at::arange(B, at::kLong);
  const at::Tensor shift = (ts.unsqueeze(0) - ts.unsqueeze(1)).remainder(B);  // [t, s] = (s − t) mod B
  const at::Tensor dw = K.index({at::indexing::Slice(), at::indexing::Slice(), shift.to(K.device())})  // (m, n, t, s)
                            .permute({0, 2, 1, 3}).reshape({m * B, n * B}) / x.size(1);
  return at::addmm(t.at("bias"), x, (t.at("weight") + dw).t());
}

}  // namespace

const TorchImpl& c3a_torch() {
  static const TorchImpl impl{forward, backward, naive};
  return impl;
}

}  // namespace gg
