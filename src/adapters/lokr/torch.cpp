// LoKr on LibTorch: the same layer as eigen.hpp without ever forming ΔW (d_out × d_in). With X₃ = X viewed as
// (N, c, d) and ΔW = s·(w1 ⊗ w2):
//   T = X₃ w2ᵀ          (N, c, b)
//   Z = w1 T            (N, a, b)        X ΔWᵀ = s·Z viewed as (N, a·b)
// Backward, dZ = s·dY viewed as (N, a, b):
//   dw1 = Σ_n dZ_n T_nᵀ (a, c);  dT = w1ᵀ dZ (N, c, b);  dw2 = Σ_n dT_nᵀ X₃_n (b, d);  dX₃ = dT w2 (N, c, d)
// and the factored sides: dw_a = dw w_bᵀ, dw_b = w_aᵀ dw. At d = 4096 (a = b = c = d = 64) the two batched products
// cost 2·N·64³ multiply-adds each way, ~1.6% of the base GEMM, where forming ΔW costs a base-sized GEMM's memory.
// The Tucker form of w2 (use_effective_conv2d) only changes how w2 (b, d) is formed from its tensors.
#include <ATen/ATen.h>

#include "adapters/lokr/eigen.hpp"
#include "core/torch_backend.hpp"
#include "core/tucker_torch.hpp"

namespace gg {
namespace {

// w2 in the Tucker form (use_effective_conv2d): its core and mode factors (core/tucker.hpp).
bool tucker_side(const HyperParams& hp, const std::string& whole) {
  return whole == "lokr_w2" && hp.at("use_w2") == 0.0 && lokr::tucker_form(hp);
}

at::Tensor side(const TorchTensors& t, const HyperParams& hp, const char* flag, const std::string& whole) {
  if (hp.at(flag) != 0.0) return t.at(whole);
  if (tucker_side(hp, whole)) return tucker::rebuild(t.at("lokr_t2"), t.at(whole + "_a"), t.at(whole + "_b"));
  return at::mm(t.at(whole + "_a"), t.at(whole + "_b"));
}

// dL/d(side) to the side's own tensors: itself, or its two factors.
void side_grads(const TorchTensors& t, const HyperParams& hp, const char* flag, const std::string& whole,
                const at::Tensor& dside, const GradRequest& request, TorchGrads& g) {
  if (hp.at(flag) != 0.0) {
    if (request.wants(whole)) g.dparams[whole] = dside;
    return;
  }
  if (tucker_side(hp, whole)) {
    tucker::TorchGrads tg = tucker::backward(dside, t.at("lokr_t2"), t.at(whole + "_a"), t.at(whole + "_b"));
    if (request.wants("lokr_t2")) g.dparams["lokr_t2"] = tg.dcore;
    if (request.wants(whole + "_a")) g.dparams[whole + "_a"] = tg.da;
    if (request.wants(whole + "_b")) g.dparams[whole + "_b"] = tg.db;
    return;
  }
  if (request.wants(whole + "_a")) g.dparams[whole + "_a"] = at::mm(dside, t.at(whole + "_b").t());
  if (request.wants(whole + "_b")) g.dparams[whole + "_b"] = at::mm(t.at(whole + "_a").t(), dside);
}

bool wants_side(const HyperParams& hp, const char* flag, const std::string& whole, const GradRequest& request) {
  if (hp.at(flag) != 0.0) return request.wants(whole);
  return request.wants(whole + "_a") || request.wants(whole + "_b") || (tucker_side(hp, whole) && request.wants("lokr_t2"));
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor w1s = side(t, hp, "use_w1", "lokr_w1") * lokr::scaling(hp);  // (a, c): s folded into the small side
  const at::Tensor w2 = side(t, hp, "use_w2", "lokr_w2");                          // (b, d)
  const int64_t n = x.size(0);
  const at::Tensor T = at::matmul(x.reshape({n, w1s.size(1), w2.size(1)}), w2.t());  // (N, c, b)
  if (saved) (*saved)["T"] = T;
  at::Tensor y = at::matmul(w1s, T).reshape({n, -1});  // (N, d_out): the adapter term
  y.add_(t.at("bias"));
  return y.addmm_(x, t.at("weight").t());  // base GEMM with the adapter term as its C operand
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const double s = lokr::scaling(hp);
  const at::Tensor w1 = side(t, hp, "use_w1", "lokr_w1");  // (a, c)
  const at::Tensor w2 = side(t, hp, "use_w2", "lokr_w2");  // (b, d)
  const int64_t n = x.size(0), a = w1.size(0), c = w1.size(1), b = w2.size(0), d = w2.size(1);
  const at::Tensor X3 = x.reshape({n, c, d});
  const at::Tensor dZ = dy.reshape({n, a, b});  // s is applied to the small tensors, never to this N-sized one
  TorchGrads g;
  if (wants_side(hp, "use_w1", "lokr_w1", request)) {
    const at::Tensor T = saved_or(saved, "T", [&] { return at::matmul(X3, w2.t()); });              // (N, c, b)
    side_grads(t, hp, "use_w1", "lokr_w1", at::tensordot(dZ, T, {0, 2}, {0, 2}).mul_(s), request, g);  // (a, c)
  }
  const bool want_w2 = wants_side(hp, "use_w2", "lokr_w2", request);
  if (!request.dx && !want_w2) return g;
  const at::Tensor dT = at::matmul(w1.t() * s, dZ);  // (N, c, b)
  if (want_w2) side_grads(t, hp, "use_w2", "lokr_w2", at::tensordot(dT, X3, {0, 1}, {0, 1}), request, g);  // (b, d)
  if (request.dx) g.dx = at::matmul(dT, w2).reshape({n, c * d}).addmm_(dy, t.at("weight"));  // adapter term + base
  return g;
}

// The naive baseline: ΔW formed densely by torch.kron, as PEFT's layer does.
at::Tensor naive(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor dW = at::kron(side(t, hp, "use_w1", "lokr_w1"), side(t, hp, "use_w2", "lokr_w2")) * lokr::scaling(hp);
  return at::addmm(t.at("bias"), x, (t.at("weight") + dW).t());
}

}  // namespace

const TorchImpl& lokr_torch() {
  static const TorchImpl impl{forward, backward, naive};
  return impl;
}

}  // namespace gg
