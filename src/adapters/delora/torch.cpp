// DeLoRA on LibTorch: the rank-r path on thin (N, r) intermediates; the per-rank scale c = λ / (r ‖A_i‖ ‖B_i‖) is an
// (r) vector, so its gradient flows back to A, B and λ through r-sized algebra.
#include <ATen/ATen.h>

#include "adapters/delora/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Scales {
  at::Tensor norm_a, norm_b, a, b, c;  // (r) each: raw and clamped norms, the per-rank scale
};

Scales scales(const TorchTensors& t, const HyperParams& hp) {
  Scales s;
  s.norm_a = t.at("delora_A").norm(2, {1});
  s.norm_b = t.at("delora_B").norm(2, {0});
  s.a = s.norm_a.clamp_min(delora::norm_floor);
  s.b = s.norm_b.clamp_min(delora::norm_floor);
  s.c = t.at("delora_lambda") / (hp.at("r") * s.a * s.b);
  return s;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor H = at::mm(x * t.at("delora_w_norm"), t.at("delora_A").t());  // (N, r)
  if (saved) (*saved)["H"] = H;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());
  return y.addmm_(H * scales(t, hp).c, t.at("delora_B").t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& A = t.at("delora_A");  // (r, d_in)
  const at::Tensor& B = t.at("delora_B");  // (d_out, r)
  const at::Tensor& w = t.at("delora_w_norm");
  const Scales s = scales(t, hp);
  const at::Tensor H = saved_or(saved, "H", [&] { return at::mm(x * w, A.t()); });  // (N, r)
  const at::Tensor U = at::mm(dy, B);                                               // (N, r)
  const at::Tensor dc = (U * H).sum(0);                                              // (r)
  const at::Tensor through_c = dc * s.c;  // dL/dc_i · c_i; c_i ∝ 1/a_i, 1/b_i
  const at::Tensor dH = U * s.c;          // (N, r)
  TorchGrads g;
  if (request.wants("delora_A")) {
    // The clamp passes gradient where the raw norm reaches the floor (torch.clamp's >=); a zero row has none.
    const at::Tensor k = at::where(s.norm_a >= delora::norm_floor, through_c / (s.a * s.norm_a), at::zeros_like(dc));
    g.dparams["delora_A"] = at::mm(dH.t(), x * w) - k.unsqueeze(1) * A;
  }
  if (request.wants("delora_B")) {
    const at::Tensor k = at::where(s.norm_b >= delora::norm_floor, through_c / (s.b * s.norm_b), at::zeros_like(dc));
    g.dparams["delora_B"] = at::mm(dy.t(), H * s.c) - B * k;
  }
  if (request.wants("delora_lambda")) g.dparams["delora_lambda"] = (dc / (hp.at("r") * s.a * s.b)).sum().reshape({1});
  if (request.dx) g.dx = at::mm(dH, A).mul_(w).addmm_(dy, t.at("weight"));
  return g;
}

}  // namespace

const TorchImpl& delora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
