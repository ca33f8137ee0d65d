// AdaLoRA on LibTorch: same formulas as eigen.hpp; P = A ⊙ E is r×d_in elementwise work, so only the N-sized
// S = X Pᵀ is saved for the backward, and P is re-formed there when dX needs it.
#include <ATen/ATen.h>

#include "adapters/adalora/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = adalora::scaling(hp);
  const at::Tensor P = t.at("lora_A") * t.at("lora_E");           // (r, d_in)
  const at::Tensor S = at::mm(x, P.t());                          // (N, r)
  if (saved) (*saved)["S"] = S;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());  // (N, d_out)
  y.addmm_(S, t.at("lora_B").t(), /*beta=*/1, /*alpha=*/s);
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = adalora::scaling(hp);
  const at::Tensor& A = t.at("lora_A");  // (r, d_in)
  const at::Tensor& E = t.at("lora_E");  // (r, 1)
  const at::Tensor& B = t.at("lora_B");  // (d_out, r)
  TorchGrads g;
  if (request.wants("lora_B")) {
    const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, (A * E).t()); });  // (N, r)
    g.dparams["lora_B"] = tall_tn(dy, S).mul_(s);                                        // (d_out, r)
  }
  const bool want_A = request.wants("lora_A"), want_E = request.wants("lora_E");
  if (!request.dx && !want_A && !want_E) return g;
  const at::Tensor dS = thin_mm(dy, B).mul_(s);  // (N, r)
  if (want_A || want_E) {
    const at::Tensor dP = at::mm(dS.t(), x);                                // (r, d_in), shared by dA and dE
    if (want_E) g.dparams["lora_E"] = (dP * A).sum(1, /*keepdim=*/true);  // (r, 1)
    if (want_A) g.dparams["lora_A"] = dP.mul_(E);                         // (r, d_in), dP is not needed after
  }
  if (request.dx) g.dx = at::mm(dy, t.at("weight")).addmm_(dS, A * E);  // (N, d_in): base + adapter term
  return g;
}

}  // namespace

const TorchImpl& adalora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
