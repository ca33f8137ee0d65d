// my_lora on LibTorch: the per-rank gate is applied to the (N, r) intermediate, at no extra full-width pass.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const double s = lowrank::scaling(hp);
  const at::Tensor G = at::mm(x, t.at("lora_A").t()) * t.at("lora_gate");  // (N, r)
  return at::addmm(at::addmm(t.at("bias"), x, t.at("weight").t()), G, t.at("lora_B").t(), 1, s);
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("lora_A");        // (r, d_in)
  const at::Tensor& B = t.at("lora_B");        // (d_out, r)
  const at::Tensor& gate = t.at("lora_gate");  // (r)
  const at::Tensor S = at::mm(x, A.t());       // (N, r)
  const at::Tensor dG = at::mm(dy, B).mul_(s); // (N, r)
  TorchGrads out;
  out.dparams["lora_B"] = at::mm(dy.t(), S * gate).mul_(s);  // (d_out, r)
  out.dparams["lora_gate"] = (dG * S).sum(0);                // (r)
  const at::Tensor dS = dG * gate;                           // (N, r)
  out.dparams["lora_A"] = at::mm(dS.t(), x);                 // (r, d_in)
  out.dx = at::mm(dy, t.at("weight")).addmm_(dS, A);         // (N, d_in)
  return out;
}

}  // namespace

const TorchImpl& my_lora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
