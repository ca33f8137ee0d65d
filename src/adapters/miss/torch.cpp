// MiSS on LibTorch: fold X by a zero pad and a (N, d_in/r, r) view summed over its blocks, never a d_in × r matrix.
#include <ATen/ATen.h>

#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor fold(const at::Tensor& x, int64_t r) {  // (N, r)
  const int64_t pad = (r - x.size(1) % r) % r;
  const at::Tensor xp = pad ? at::constant_pad_nd(x, {0, pad}) : x;
  return xp.reshape({x.size(0), -1, r}).sum(1);
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, TorchTensors* saved) {
  const at::Tensor& D = t.at("miss_block");
  const at::Tensor F = fold(x, D.size(0));
  if (saved) (*saved)["F"] = F;
  return at::addmm(t.at("bias"), F, D).addmm_(x, t.at("weight").t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& D = t.at("miss_block");
  const int64_t r = D.size(0), d_in = x.size(1);
  TorchGrads g;
  if (request.wants("miss_block")) g.dparams["miss_block"] = at::mm(saved_or(saved, "F", [&] { return fold(x, r); }).t(), dy);
  if (request.dx) {
    const at::Tensor G = at::mm(dy, D.t());                              // (N, r)
    const at::Tensor unfolded = G.repeat({1, (d_in + r - 1) / r}).narrow(1, 0, d_in);  // G[n, k mod r]
    g.dx = unfolded.contiguous().addmm_(dy, t.at("weight"));
  }
  return g;
}

}  // namespace

const TorchImpl& miss_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
