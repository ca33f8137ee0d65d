// LoRA on LibTorch: same formulas as eigen.hpp, on any device; the rank-r path never forms ΔW.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = lowrank::scaling(hp);
  const at::Tensor S = at::mm(x, t.at("lora_A").t());             // (N, r)
  if (saved) (*saved)["S"] = S;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());  // (N, d_out)
  y.addmm_(S, t.at("lora_B").t(), /*beta=*/1, /*alpha=*/s);
  if (hp.at("lora_bias") != 0.0) y.add_(t.at("lora_B_bias"), s);
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("lora_A");  // (r, d_in)
  const at::Tensor& B = t.at("lora_B");  // (d_out, r)
  TorchGrads g;
  if (request.wants("lora_B")) {
    const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, A.t()); });  // (N, r)
    g.dparams["lora_B"] = tall_tn(dy, S).mul_(s);                                  // (d_out, r)
  }
  if (hp.at("lora_bias") != 0.0 && request.wants("lora_B_bias")) g.dparams["lora_B_bias"] = dy.sum(0).mul_(s);
  if (!request.dx && !request.wants("lora_A")) return g;
  const at::Tensor dS = thin_mm(dy, B).mul_(s);                                     // (N, r)
  if (request.wants("lora_A")) g.dparams["lora_A"] = at::mm(dS.t(), x);            // (r, d_in)
  if (request.dx) g.dx = at::mm(dy, t.at("weight")).addmm_(dS, A);                 // (N, d_in): base + adapter term
  return g;
}

}  // namespace

const TorchImpl& lora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
