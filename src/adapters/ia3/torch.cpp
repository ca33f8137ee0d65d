// (IA)³ on LibTorch: same formulas as eigen.hpp. The output form saves Z = X Wᵀ + b for dl (recomputing it would
// repeat the base GEMM); the input form needs only x, which the op keeps anyway.
#include <ATen/ATen.h>

#include "adapters/ia3/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor& l = t.at("ia3_l");
  if (ia3::feedforward(hp)) {
    const at::Tensor lx = l.repeat_interleave(ia3::conv_kernel(hp));  // (d_in): one value per channel, K times
    return at::addmm(t.at("bias"), x * lx, t.at("weight").t());        // (N, d_out)
  }
  const at::Tensor Z = at::addmm(t.at("bias"), x, t.at("weight").t());                  // (N, d_out)
  if (saved) (*saved)["Z"] = Z;
  return Z * l;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& W = t.at("weight");  // (d_out, d_in)
  const at::Tensor& l = t.at("ia3_l");   // (d_out) or (d_in)
  TorchGrads g;
  if (ia3::feedforward(hp)) {
    if (!request.dx && !request.wants("ia3_l")) return g;
    const int64_t k = ia3::conv_kernel(hp);
    const at::Tensor dU = at::mm(dy, W);                                        // (N, d_in)
    if (request.wants("ia3_l")) g.dparams["ia3_l"] = (dU * x).sum(0).view({-1, k}).sum(1);  // (d_in / K)
    if (request.dx) g.dx = dU.mul_(k == 1 ? l : l.repeat_interleave(k));       // (N, d_in), dU not needed after
    return g;
  }
  if (request.wants("ia3_l")) {
    const at::Tensor Z = saved_or(saved, "Z", [&] { return at::addmm(t.at("bias"), x, W.t()); });  // (N, d_out)
    g.dparams["ia3_l"] = (dy * Z).sum(0);                                                            // (d_out)
  }
  if (request.dx) g.dx = at::mm(dy * l, W);  // (N, d_in)
  return g;
}

}  // namespace

const TorchImpl& ia3_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
