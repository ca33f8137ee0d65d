// LoRA on LibTorch: same formulas as eigen.hpp, on any device; the rank-r path never forms ΔW.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const double s = lowrank::scaling(hp);
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());   // (N, d_out)
  const at::Tensor S = at::mm(x, t.at("lora_A").t());                // (N, r)
  y = at::addmm(y, S, t.at("lora_B").t(), /*beta=*/1, /*alpha=*/s);
  if (hp.at("lora_bias") != 0.0) y = y + s * t.at("lora_B_bias");
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& A = t.at("lora_A");  // (r, d_in)
  const at::Tensor& B = t.at("lora_B");  // (d_out, r)
  const at::Tensor S = at::mm(x, A.t());        // (N, r), recomputed: cheaper than keeping it alive
  const at::Tensor dS = at::mm(dy, B).mul_(s);  // (N, r)
  TorchGrads g;
  g.dparams["lora_B"] = at::mm(dy.t(), S).mul_(s);  // (d_out, r)
  g.dparams["lora_A"] = at::mm(dS.t(), x);          // (r, d_in)
  if (hp.at("lora_bias") != 0.0) g.dparams["lora_B_bias"] = dy.sum(0).mul_(s);
  g.dx = at::mm(dy, t.at("weight")).addmm_(dS, A);  // (N, d_in): base term, then the adapter term in place
  return g;
}

}  // namespace

const TorchImpl& lora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
