// RandLoRA on LibTorch: the scaled basis Af (r·nb, mn) is formed from λ, γ and the (r, mn) basis — it is the size of
// one factor, not of ΔW — and applied on the thin side of the layer; ΔW itself is never formed.
#include <ATen/ATen.h>

#include "adapters/randlora/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor scaled_a(const TorchTensors& t) {  // Af (r·nb, mn): row k·nb + b = λ[k,b] · A[k] ⊙ γ[b]
  const at::Tensor a3 = t.at("randlora_lambda").unsqueeze(2) * t.at("randlora_A") * t.at("randlora_gamma").unsqueeze(0);
  return a3.view({a3.size(0) * a3.size(1), a3.size(2)});
}

at::Tensor flat_b(const TorchTensors& t) {  // (mx, nb·r): column b·r + k
  const at::Tensor& B = t.at("randlora_B");
  return B.reshape({B.size(0), B.size(1) * B.size(2)});
}

bool input_is_min(const at::Tensor& x, const TorchTensors& t) { return x.size(1) <= t.at("weight").size(0); }

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor af = scaled_a(t);  // the size of W at full rank (r·nb ≈ mn): kept for the backward
  const at::Tensor bf = flat_b(t);
  if (saved) (*saved)["af"] = af;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());
  const bool in_min = input_is_min(x, t);
  const at::Tensor thin = in_min ? at::mm(x, af.t()) : at::mm(x, bf);  // (N, r·nb)
  if (saved) (*saved)["thin"] = thin;
  return y.addmm_(thin, in_min ? bf.t() : af, 1.0, randlora::scaling(hp));
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = randlora::scaling(hp);
  const at::Tensor af = saved_or(saved, "af", [&] { return scaled_a(t); });
  const at::Tensor bf = flat_b(t);
  const bool in_min = input_is_min(x, t);
  const bool need_daf = request.wants("randlora_lambda") || request.wants("randlora_gamma");
  TorchGrads g;
  at::Tensor daf;  // (r·nb, mn)
  if (in_min) {
    const at::Tensor dP = at::mm(dy, bf).mul_(s);  // (N, r·nb)
    if (need_daf) daf = at::mm(dP.t(), x);
    if (request.dx) g.dx = at::mm(dP, af).addmm_(dy, t.at("weight"));
  } else {
    if (need_daf) {
      const at::Tensor Q = saved_or(saved, "thin", [&] { return at::mm(x, bf); });  // (N, r·nb)
      daf = at::mm(Q.t(), dy).mul_(s);
    }
    // s scales the thin (N, r·nb) intermediate, as in the other branch and the forward
    if (request.dx) g.dx = at::mm(at::mm(dy, af.t()).mul_(s), bf.t()).addmm_(dy, t.at("weight"));
  }
  if (!need_daf) return g;
  const at::Tensor& lambda = t.at("randlora_lambda");
  const at::Tensor dA3 = daf.view({lambda.size(0), lambda.size(1), -1}) * t.at("randlora_A");  // (r, nb, mn): dAf ⊙ A[k]
  if (request.wants("randlora_lambda")) g.dparams["randlora_lambda"] = (dA3 * t.at("randlora_gamma").unsqueeze(0)).sum(2);
  if (request.wants("randlora_gamma")) g.dparams["randlora_gamma"] = (dA3 * t.at("randlora_lambda").unsqueeze(2)).sum(0);
  return g;
}

}  // namespace

const TorchImpl& randlora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
