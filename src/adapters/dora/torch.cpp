// DoRA on LibTorch: V = W + s·BA only for its row norms (as PEFT does); the N-sized work stays rank-r.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor adapted_weight(const TorchTensors& t, double s) {
  return at::addmm(t.at("weight"), t.at("lora_B"), t.at("lora_A"), /*beta=*/1, /*alpha=*/s);  // (d_out, d_in)
}

// n = ‖V‖ per row, or the detached constant when the caller supplies it (see AdapterInfo::detached).
at::Tensor row_norms(const TorchTensors& t, const at::Tensor& V) {
  const auto given = t.find("weight_norm");
  return given != t.end() ? given->second : at::linalg_vector_norm(V, 2, {1});
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const double s = lowrank::scaling(hp);
  at::Tensor n = row_norms(t, adapted_weight(t, s));                    // (d_out)
  if (hp.at("exact_gradient") == 0.0) n = n.detach();                   // PEFT's semantics
  const at::Tensor g = t.at("lora_magnitude_vector") / n;               // (d_out)
  const at::Tensor S = at::mm(x, t.at("lora_A").t());                   // (N, r)
  const at::Tensor P = at::addmm(at::mm(x, t.at("weight").t()), S, t.at("lora_B").t(), 1, s);  // (N, d_out)
  return at::addcmul(t.at("bias"), P, g);
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy) {
  const double s = lowrank::scaling(hp);
  const at::Tensor& W = t.at("weight");
  const at::Tensor& A = t.at("lora_A");
  const at::Tensor& B = t.at("lora_B");
  const at::Tensor& m = t.at("lora_magnitude_vector");
  const at::Tensor V = adapted_weight(t, s);               // (d_out, d_in)
  const at::Tensor n = row_norms(t, V);                    // (d_out)
  const at::Tensor g = m / n;                              // (d_out)
  const at::Tensor S = at::mm(x, A.t());                   // (N, r)
  const at::Tensor P = at::addmm(at::mm(x, W.t()), S, B.t(), 1, s);  // (N, d_out)
  const at::Tensor dP = dy * g;                            // (N, d_out)
  const at::Tensor dg = (dy * P).sum(0);                   // (d_out)
  const at::Tensor dS = at::mm(dP, B).mul_(s);             // (N, r)
  TorchGrads out;
  out.dparams["lora_magnitude_vector"] = dg / n;
  at::Tensor dB = at::mm(dP.t(), S).mul_(s);  // (d_out, r)
  at::Tensor dA = at::mm(dS.t(), x);          // (r, d_in)
  if (hp.at("exact_gradient") != 0.0) {
    // dn = −dg·m/n², dV = (dn/n) ⊙rows V; V = W + s·B A gives dB += s·dV Aᵀ and dA += s·Bᵀ dV.
    const at::Tensor dV = V * (-dg * m / n.pow(3)).unsqueeze(1);
    dB.addmm_(dV, A.t(), 1, s);
    dA.addmm_(B.t(), dV, 1, s);
  }
  out.dparams["lora_B"] = dB;
  out.dparams["lora_A"] = dA;
  out.dx = at::mm(dP, W).addmm_(dS, A);  // (N, d_in)
  return out;
}

}  // namespace

const TorchImpl& dora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
