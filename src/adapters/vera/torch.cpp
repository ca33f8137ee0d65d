// VeRA on LibTorch: the rank-r path on thin (N, r) intermediates; the forward saves S and P = (S ⊙ λ_d) Bᵀ, the
// one N × d_out intermediate that λ_b's gradient needs.
#include <ATen/ATen.h>

#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, TorchTensors* saved) {
  const at::Tensor S = at::mm(x, t.at("vera_A").t());                 // (N, r)
  const at::Tensor P = at::mm(S * t.at("vera_lambda_d"), t.at("vera_B").t());  // (N, d_out)
  if (saved) *saved = {{"S", S}, {"P", P}};
  return at::addcmul(t.at("bias"), P, t.at("vera_lambda_b")).addmm_(x, t.at("weight").t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& ld = t.at("vera_lambda_d");
  const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, t.at("vera_A").t()); });
  TorchGrads g;
  if (request.wants("vera_lambda_b")) {
    const at::Tensor P = saved_or(saved, "P", [&] { return at::mm(S * ld, t.at("vera_B").t()); });
    g.dparams["vera_lambda_b"] = (dy * P).sum(0);
  }
  if (!request.dx && !request.wants("vera_lambda_d")) return g;
  const at::Tensor dH = at::mm(dy * t.at("vera_lambda_b"), t.at("vera_B"));  // (N, r)
  if (request.wants("vera_lambda_d")) g.dparams["vera_lambda_d"] = (dH * S).sum(0);
  if (request.dx) g.dx = at::mm(dH * ld, t.at("vera_A")).addmm_(dy, t.at("weight"));
  return g;
}

}  // namespace

const TorchImpl& vera_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
