// weight_lora on LibTorch: the gate folds into the rank-r path; never the fork's dense ΔW = s·w·(AB)ᵀ.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const double s = lowrank::scaling(hp);
  const at::Tensor S = at::mm(x, t.at("weight_lora_A"));                          // (N, r)
  const at::Tensor T = at::mm(S * (s * t.at("weight_lora_w")), t.at("weight_lora_B"));  // (N, d_out), gate on the thin side
  return at::addmm(t.at("bias"), x, t.at("weight").t()) + T;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("weight_lora_A");  // (d_in, r)
  const at::Tensor& B = t.at("weight_lora_B");  // (r, d_out)
  const at::Tensor& w = t.at("weight_lora_w");  // ()
  const at::Tensor S = at::mm(x, A);           // (N, r)
  const at::Tensor dyBt = at::mm(dy, B.t());   // (N, r), shared by dw and dS
  const at::Tensor sw = w * s;                 // () stays on the device: no host sync
  TorchGrads g;
  g.dparams["weight_lora_w"] = (dyBt * S).sum().mul_(s);  // ()
  g.dparams["weight_lora_B"] = at::mm(S.t(), dy).mul_(sw);  // (r, d_out)
  const at::Tensor dS = dyBt.mul(sw);                       // (N, r)
  g.dparams["weight_lora_A"] = at::mm(x.t(), dS);           // (d_in, r)
  g.dx = at::mm(dy, t.at("weight")).addmm_(dS, A.t());      // (N, d_in)
  return g;
}

}  // namespace

const TorchImpl& weight_lora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
