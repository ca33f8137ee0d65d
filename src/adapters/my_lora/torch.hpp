// my_lora on LibTorch: the per-rank gate is applied to the (N, r) intermediate, at no extra full-width pass. A
// template over the gate's registry name, shared with KaSA (lora_diag).
#pragma once
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg::my_lora {

template <const char* Gate>
at::Tensor torch_forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = lowrank::scaling(hp);
  const at::Tensor S = at::mm(x, t.at("lora_A").t());  // (N, r)
  if (saved) (*saved)["S"] = S;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());
  y.addmm_(S * t.at(Gate), t.at("lora_B").t(), 1, s);
  return y;
}

template <const char* Gate>
TorchGrads torch_backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                          const TorchTensors& saved, const GradRequest& request) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("lora_A");  // (r, d_in)
  const at::Tensor& B = t.at("lora_B");  // (d_out, r)
  const at::Tensor& gate = t.at(Gate);   // (r)
  const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, A.t()); });  // (N, r)
  TorchGrads out;
  if (request.wants("lora_B")) out.dparams["lora_B"] = tall_tn(dy, S * gate).mul_(s);  // (d_out, r)
  if (!request.dx && !request.wants("lora_A") && !request.wants(Gate)) return out;
  const at::Tensor dG = thin_mm(dy, B).mul_(s);                    // (N, r)
  if (request.wants(Gate)) out.dparams[Gate] = (dG * S).sum(0);    // (r)
  if (!request.dx && !request.wants("lora_A")) return out;
  const at::Tensor dS = dG * gate;                                            // (N, r)
  if (request.wants("lora_A")) out.dparams["lora_A"] = at::mm(dS.t(), x);    // (r, d_in)
  if (request.dx) out.dx = at::mm(dy, t.at("weight")).addmm_(dS, A);         // (N, d_in)
  return out;
}

template <const char* Gate>
const TorchImpl& torch_impl() {
  static const TorchImpl impl{torch_forward<Gate>, torch_backward<Gate>};
  return impl;
}

}  // namespace gg::my_lora
