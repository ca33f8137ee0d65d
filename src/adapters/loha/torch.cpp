// LoHa on LibTorch: the same layer as eigen.hpp without ever forming ΔW. The Hadamard product of two rank-r products
// is one rank-r² product:
//   (w1a w1b) ⊙ (w2a w2b) = U V,  U[:, i·r+j] = w1a[:, i] ⊙ w2a[:, j]   (d_out, r²)
//                                 V[i·r+j, :] = w1b[i, :] ⊙ w2b[j, :]   (r², d_in)
//   H = X Vᵀ                      (N, r²)
//   Y = X Wᵀ + b + s·H Uᵀ         (N, d_out)
// Backward through U and V, then back to the four factors:
//   dH = s·dY U  (N, r²);  dU = s·dYᵀ H  (d_out, r²);  dV = dHᵀ X  (r², d_in);  dX = dY W + dH V  (N, d_in)
//   dw1a[o, i] = Σ_j dU[o, i·r+j] w2a[o, j]     dw2a[o, j] = Σ_i dU[o, i·r+j] w1a[o, i]
//   dw1b[i, k] = Σ_j dV[i·r+j, k] w2b[j, k]     dw2b[j, k] = Σ_i dV[i·r+j, k] w1b[i, k]
// U and V are parameter-sized (r²·d); the forward saves them with the N-sized H so the backward re-forms nothing.
// The Tucker form (use_effective_conv2d) has no rank-r² factorisation of ΔW: it forms M1, M2 and ΔW densely, as
// PEFT's layer does (weight-sized, not N-sized, work).
#include <ATen/ATen.h>

#include "adapters/loha/eigen.hpp"
#include "core/torch_backend.hpp"
#include "core/tucker_torch.hpp"

namespace gg {
namespace {

at::Tensor make_U(const TorchTensors& t) {  // (d_out, r²)
  const at::Tensor& w1a = t.at("hada_w1_a");
  const at::Tensor& w2a = t.at("hada_w2_a");
  return (w1a.unsqueeze(2) * w2a.unsqueeze(1)).reshape({w1a.size(0), w1a.size(1) * w2a.size(1)});
}

at::Tensor make_V(const TorchTensors& t) {  // (r², d_in)
  const at::Tensor& w1b = t.at("hada_w1_b");
  const at::Tensor& w2b = t.at("hada_w2_b");
  return (w1b.unsqueeze(1) * w2b.unsqueeze(0)).reshape({w1b.size(0) * w2b.size(0), w1b.size(1)});
}

// The Tucker form: M1 or M2 (d_out, d_in) from its core and mode factors.
at::Tensor tucker_factor(const TorchTensors& t, const std::string& side) {
  return tucker::rebuild(t.at("hada_t" + side), t.at("hada_w" + side + "_a"), t.at("hada_w" + side + "_b"));
}

at::Tensor tucker_forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor dW = tucker_factor(t, "1") * tucker_factor(t, "2") * loha::scaling(hp);
  return at::addmm(t.at("bias"), x, (t.at("weight") + dW).t());
}

TorchGrads tucker_backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                           const GradRequest& request) {
  const double s = loha::scaling(hp);
  const at::Tensor M1 = tucker_factor(t, "1"), M2 = tucker_factor(t, "2");  // (d_out, d_in)
  TorchGrads g;
  const at::Tensor G = tall_tn(dy, x).mul_(s);  // (d_out, d_in)
  for (const auto& [side, dM] : {std::pair{std::string("1"), G * M2}, std::pair{std::string("2"), G * M1}}) {
    const std::string core = "hada_t" + side, a = "hada_w" + side + "_a", b = "hada_w" + side + "_b";
    if (!request.wants(core) && !request.wants(a) && !request.wants(b)) continue;
    tucker::TorchGrads tg = tucker::backward(dM, t.at(core), t.at(a), t.at(b));
    if (request.wants(core)) g.dparams[core] = tg.dcore;
    if (request.wants(a)) g.dparams[a] = tg.da;
    if (request.wants(b)) g.dparams[b] = tg.db;
  }
  if (request.dx) g.dx = at::mm(dy, t.at("weight") + M1 * M2 * s);  // (N, d_in): base + adapter term
  return g;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  if (loha::tucker_form(hp)) return tucker_forward(x, t, hp);
  const double s = loha::scaling(hp);
  const at::Tensor U = make_U(t);                                 // (d_out, r²)
  const at::Tensor V = make_V(t);                                 // (r², d_in)
  const at::Tensor H = at::mm(x, V.t());                          // (N, r²)
  if (saved) {
    (*saved)["U"] = U;
    (*saved)["V"] = V;
    (*saved)["H"] = H;
  }
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());  // (N, d_out)
  y.addmm_(H, U.t(), /*beta=*/1, /*alpha=*/s);
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  if (loha::tucker_form(hp)) return tucker_backward(x, t, hp, dy, request);
  const double s = loha::scaling(hp);
  const at::Tensor& w1a = t.at("hada_w1_a");  // (d_out, r)
  const at::Tensor& w1b = t.at("hada_w1_b");  // (r, d_in)
  const at::Tensor& w2a = t.at("hada_w2_a");  // (d_out, r)
  const at::Tensor& w2b = t.at("hada_w2_b");  // (r, d_in)
  const int64_t r = w1a.size(1);
  TorchGrads g;
  const bool want_w1a = request.wants("hada_w1_a"), want_w2a = request.wants("hada_w2_a");
  const bool want_w1b = request.wants("hada_w1_b"), want_w2b = request.wants("hada_w2_b");
  if (want_w1a || want_w2a) {
    const at::Tensor V = saved_or(saved, "V", [&] { return make_V(t); });         // (r², d_in)
    const at::Tensor H = saved_or(saved, "H", [&] { return at::mm(x, V.t()); });  // (N, r²)
    const at::Tensor dU = tall_tn(dy, H).mul_(s).view({w1a.size(0), r, r});       // (d_out, r, r)
    if (want_w1a) g.dparams["hada_w1_a"] = (dU * w2a.unsqueeze(1)).sum(2);        // (d_out, r)
    if (want_w2a) g.dparams["hada_w2_a"] = (dU * w1a.unsqueeze(2)).sum(1);        // (d_out, r)
  }
  if (!request.dx && !want_w1b && !want_w2b) return g;
  const at::Tensor U = saved_or(saved, "U", [&] { return make_U(t); });  // (d_out, r²)
  const at::Tensor dH = thin_mm(dy, U).mul_(s);                          // (N, r²)
  if (want_w1b || want_w2b) {
    const at::Tensor dV = at::mm(dH.t(), x).view({r, r, w1b.size(1)});    // (r, r, d_in)
    if (want_w1b) g.dparams["hada_w1_b"] = (dV * w2b.unsqueeze(0)).sum(1);  // (r, d_in)
    if (want_w2b) g.dparams["hada_w2_b"] = (dV * w1b.unsqueeze(1)).sum(0);  // (r, d_in)
  }
  if (request.dx) {
    const at::Tensor V = saved_or(saved, "V", [&] { return make_V(t); });  // (r², d_in)
    g.dx = at::mm(dy, t.at("weight")).addmm_(dH, V);                       // (N, d_in): base + adapter term
  }
  return g;
}

// The naive baseline: ΔW = s·(w1a w1b) ⊙ (w2a w2b) formed densely, as PEFT's layer does.
at::Tensor naive(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  if (loha::tucker_form(hp)) return tucker_forward(x, t, hp);
  const at::Tensor dW = at::mm(t.at("hada_w1_a"), t.at("hada_w1_b")) * at::mm(t.at("hada_w2_a"), t.at("hada_w2_b"));
  return at::addmm(t.at("bias"), x, (t.at("weight") + dW * loha::scaling(hp)).t());
}

}  // namespace

const TorchImpl& loha_torch() {
  static const TorchImpl impl{forward, backward, naive};
  return impl;
}

}  // namespace gg
