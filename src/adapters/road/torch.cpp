// RoAd on LibTorch: the base GEMM, then elementwise work on the (N, d_out) output viewed as (N, groups, 2, g/2):
// the pair partner of every row is the other half of its group, so rot(z) is a flip of that axis with a sign.
#include <ATen/ATen.h>

#include "adapters/road/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

// rot(z) for z (N, d_out): first half of each group −(second half), second half the first.
at::Tensor rot(const at::Tensor& z, int64_t g) {
  const at::Tensor v = z.reshape({z.size(0), z.size(1) / g, 2, g / 2});
  return at::stack({-v.select(2, 1), v.select(2, 0)}, 2).reshape(z.sizes());
}

// f = α cos θ and s = α sin θ per output (d_out each), from the variant's layout (PEFT's _prepare_cols).
std::pair<at::Tensor, at::Tensor> factors(const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor& theta = t.at("road_theta");
  const at::Tensor& alpha = t.at("road_alpha");
  const int64_t g = road::group(hp);
  if (road::variant(hp) == 4) {
    const at::Tensor th = theta.reshape({-1, 2, g}), al = alpha.reshape({-1, 2, g});
    return {(al.select(1, 0) * th.select(1, 0).cos()).flatten(), (al.select(1, 1) * th.select(1, 1).sin()).flatten()};
  }
  at::Tensor th = theta, al = alpha;
  if (road::variant(hp) == 1) {  // one (θ, α) per pair: repeat each group's half for both halves
    th = theta.reshape({-1, 1, g / 2}).expand({-1, 2, g / 2}).flatten();
    al = alpha.reshape({-1, 1, g / 2}).expand({-1, 2, g / 2}).flatten();
  }
  return {al * th.cos(), al * th.sin()};
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor z = at::addmm(t.at("bias"), x, t.at("weight").t());
  if (saved) (*saved)["z"] = z;
  const auto [f, s] = factors(t, hp);
  return z * f + rot(z, road::group(hp)) * s;
}

// df, ds (d_out) back to the variant's (θ, α).
void param_grads(const TorchTensors& t, const HyperParams& hp, const at::Tensor& df, const at::Tensor& ds, TorchGrads& g) {
  const at::Tensor& theta = t.at("road_theta");
  const at::Tensor& alpha = t.at("road_alpha");
  const int64_t gs = road::group(hp);
  if (road::variant(hp) == 4) {
    const at::Tensor th = theta.reshape({-1, 2, gs}), al = alpha.reshape({-1, 2, gs});
    const at::Tensor dfc = df.reshape({-1, gs}), dss = ds.reshape({-1, gs});
    const at::Tensor th_c = th.select(1, 0), th_s = th.select(1, 1), al_c = al.select(1, 0), al_s = al.select(1, 1);
    g.dparams["road_theta"] = at::stack({-dfc * al_c * th_c.sin(), dss * al_s * th_s.cos()}, 1).flatten();
    g.dparams["road_alpha"] = at::stack({dfc * th_c.cos(), dss * th_s.sin()}, 1).flatten();
    return;
  }
  at::Tensor dF = df, dS = ds;
  if (road::variant(hp) == 1) {  // both rows of a pair read the same (θ, α): sum their gradients
    dF = df.reshape({-1, 2, gs / 2}).sum(1).flatten();
    dS = ds.reshape({-1, 2, gs / 2}).sum(1).flatten();
  }
  g.dparams["road_theta"] = alpha * (dS * theta.cos() - dF * theta.sin());
  g.dparams["road_alpha"] = dF * theta.cos() + dS * theta.sin();
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const int64_t g = road::group(hp);
  const auto [f, s] = factors(t, hp);
  TorchGrads gr;
  if (request.wants("road_theta") || request.wants("road_alpha")) {
    const at::Tensor z = saved_or(saved, "z", [&] { return at::addmm(t.at("bias"), x, t.at("weight").t()); });
    param_grads(t, hp, (dy * z).sum(0), (dy * rot(z, g)).sum(0), gr);  // both from the same two (d_out) sums
    for (const char* name : {"road_theta", "road_alpha"})
      if (!request.wants(name)) gr.dparams.erase(name);
  }
  if (request.dx) gr.dx = at::mm(dy * f - rot(dy * s, g), t.at("weight"));
  return gr;
}

}  // namespace

const TorchImpl& road_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
