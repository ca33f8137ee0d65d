// DoRA on LibTorch: V = W + s·BA only for its row norms (as PEFT does); the N-sized work stays rank-r. The forward
// saves S, P and n so the backward needs no second pass over the base weight.
#include <ATen/ATen.h>

#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor adapted_weight(const TorchTensors& t, double s) {
  return at::addmm(t.at("weight"), t.at("lora_B"), t.at("lora_A"), /*beta=*/1, /*alpha=*/s);  // (d_out, d_in)
}

// n = ‖V‖ per row, or the detached constant when the caller supplies it (see AdapterInfo::detached).
at::Tensor row_norms(const TorchTensors& t, double s) {
  const auto given = t.find("weight_norm");
  return given != t.end() ? given->second : at::linalg_vector_norm(adapted_weight(t, s), 2, {1});
}

// P = X Vᵀ = X Wᵀ + s·(X Aᵀ) Bᵀ without forming V.
at::Tensor adapted_product(const at::Tensor& x, const at::Tensor& S, const TorchTensors& t, double s) {
  return at::mm(x, t.at("weight").t()).addmm_(S, t.at("lora_B").t(), 1, s);  // (N, d_out)
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = lowrank::scaling(hp);
  at::Tensor n = row_norms(t, s);                                // (d_out)
  if (hp.at("exact_gradient") == 0.0) n = n.detach();            // PEFT's semantics
  const at::Tensor S = at::mm(x, t.at("lora_A").t());            // (N, r)
  const at::Tensor P = adapted_product(x, S, t, s);              // (N, d_out)
  if (saved) *saved = {{"S", S}, {"P", P}, {"n", n}};
  return at::addcmul(t.at("bias"), P, t.at("lora_magnitude_vector") / n);
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = lowrank::scaling(hp);
  const bool exact = hp.at("exact_gradient") != 0.0;
  const at::Tensor& A = t.at("lora_A");
  const at::Tensor& B = t.at("lora_B");
  const at::Tensor& m = t.at("lora_magnitude_vector");
  const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, A.t()); });        // (N, r)
  const at::Tensor P = saved_or(saved, "P", [&] { return adapted_product(x, S, t, s); });  // (N, d_out)
  const at::Tensor n = saved_or(saved, "n", [&] { return row_norms(t, s); });         // (d_out)
  const at::Tensor g = m / n;                                                          // (d_out)
  const at::Tensor dP = dy * g;                                                        // (N, d_out)
  const bool need_dg = request.wants("lora_magnitude_vector") || exact;
  const at::Tensor dg = need_dg ? (dy * P).sum(0) : at::Tensor();                      // (d_out)
  TorchGrads out;
  if (request.wants("lora_magnitude_vector")) out.dparams["lora_magnitude_vector"] = dg / n;
  // dn = −dg·m/n², dV = (dn/n) ⊙rows V; V = W + s·B A gives dB += s·dV Aᵀ and dA += s·Bᵀ dV.
  const at::Tensor dV = exact ? adapted_weight(t, s) * (-dg * m / n.pow(3)).unsqueeze(1) : at::Tensor();
  if (request.wants("lora_B")) {
    at::Tensor dB = tall_tn(dP, S).mul_(s);  // (d_out, r)
    if (exact) dB.addmm_(dV, A.t(), 1, s);
    out.dparams["lora_B"] = dB;
  }
  if (!request.dx && !request.wants("lora_A")) return out;
  const at::Tensor dS = thin_mm(dP, B).mul_(s);  // (N, r)
  if (request.wants("lora_A")) {
    at::Tensor dA = at::mm(dS.t(), x);  // (r, d_in)
    if (exact) dA.addmm_(B.t(), dV, 1, s);
    out.dparams["lora_A"] = dA;
  }
  if (request.dx) out.dx = at::mm(dP, t.at("weight")).addmm_(dS, A);  // (N, d_in)
  return out;
}

}  // namespace

const TorchImpl& dora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
