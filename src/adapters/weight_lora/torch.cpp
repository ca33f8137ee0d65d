// weight_lora on LibTorch: the gate folds into the rank-r path; never the fork's dense ΔW = s·w·(AB)ᵀ.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = lowrank::scaling(hp);
  const at::Tensor S = thin_mm(x, t.at("weight_lora_A"));  // (N, r)
  if (saved) (*saved)["S"] = S;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());   // (N, d_out)
  y.addmm_(S * (s * t.at("weight_lora_w")), t.at("weight_lora_B"));  // gate on the thin (N, r) side
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("weight_lora_A");  // (d_in, r)
  const at::Tensor& B = t.at("weight_lora_B");  // (r, d_out)
  const at::Tensor sw = t.at("weight_lora_w") * s;  // () stays on the device: no host sync
  const at::Tensor S = saved_or(saved, "S", [&] { return thin_mm(x, A); });  // (N, r)
  TorchGrads g;
  if (request.wants("weight_lora_B")) g.dparams["weight_lora_B"] = at::mm(S.t(), dy).mul_(sw);  // (r, d_out)
  const bool need_dS = request.dx || request.wants("weight_lora_A");
  if (!need_dS && !request.wants("weight_lora_w")) return g;
  const at::Tensor dyBt = at::mm(dy, B.t());  // (N, r), shared by dw and dS
  if (request.wants("weight_lora_w")) g.dparams["weight_lora_w"] = (dyBt * S).sum().mul_(s);  // ()
  if (!need_dS) return g;
  const at::Tensor dS = dyBt.mul_(sw);                                                 // (N, r)
  if (request.wants("weight_lora_A")) g.dparams["weight_lora_A"] = tall_tn(x, dS);    // (d_in, r)
  if (request.dx) g.dx = at::mm(dy, t.at("weight")).addmm_(dS, A.t());              // (N, d_in)
  return g;
}

}  // namespace

const TorchImpl& weight_lora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
