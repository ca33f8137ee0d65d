// BOFT on LibTorch: each butterfly factor F_i = P_i · blockdiag(Q_i) · P_iᵀ applied to X as a column gather, one
// batched H x H product over the D blocks and the inverse gather — M (d_in x d_in) is never formed. The factors act in
// the order X M = X F_{m−1} ⋯ F_0; the forward keeps each factor's input for the backward.
#include <ATen/ATen.h>

#include "adapters/boft/eigen.hpp"
#include "adapters/oft/cayley_torch.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Factor {
  at::Tensor gather_in;   // (Z P)[:, c] = Z[:, p^{-1}[c]]
  at::Tensor gather_out;  // (V Pᵀ)[:, j] = V[:, p[j]]
  at::Tensor S, Q;        // (D, H, H)
};

std::vector<Factor> factors(const at::Tensor& R, const HyperParams& hp, int64_t d_in) {
  const int64_t h = boft::block_size(hp), d = d_in / h, m = boft::factors(hp);
  std::vector<Factor> out;
  for (int64_t i = 0; i < m; ++i) {
    const std::vector<int64_t> p = boft::butterfly(d_in, h, i, m);
    std::vector<int64_t> inv(p.size());
    for (size_t j = 0; j < p.size(); ++j) inv[p[j]] = static_cast<int64_t>(j);
    const auto opts = at::TensorOptions().dtype(at::kLong);
    const at::Tensor A = R[i].reshape({d, h, h});
    const at::Tensor S = (A - A.transpose(1, 2)).mul_(0.5);
    out.push_back({at::tensor(inv, opts).to(R.device()), at::tensor(p, opts).to(R.device()), S, oft::cayley(S)});
  }
  return out;
}

// (N, D·H) <-> (D, N, H)
at::Tensor blocks(const at::Tensor& m, int64_t h) { return m.view({m.size(0), m.size(1) / h, h}).transpose(0, 1); }
at::Tensor unblock(const at::Tensor& b) { return b.transpose(0, 1).reshape({b.size(1), b.size(0) * b.size(2)}); }

at::Tensor apply(const Factor& f, const at::Tensor& z, int64_t h) {
  return unblock(at::bmm(blocks(z.index_select(1, f.gather_in), h), f.Q)).index_select(1, f.gather_out);
}

// X M, with the input of every factor (inputs[i] feeds F_i).
at::Tensor rotate(const std::vector<Factor>& F, const at::Tensor& x, int64_t h, std::vector<at::Tensor>* inputs) {
  at::Tensor z = x;
  if (inputs) inputs->assign(F.size(), at::Tensor());
  for (int64_t i = static_cast<int64_t>(F.size()) - 1; i >= 0; --i) {
    if (inputs) (*inputs)[i] = z;
    z = apply(F[i], z, h);
  }
  return z;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors*) {
  const int64_t h = boft::block_size(hp);
  const at::Tensor xm = rotate(factors(t.at("boft_R"), hp, x.size(1)), x, h, nullptr);
  return at::mm(xm, t.at("weight").t()).mul_(t.at("boft_s").view({-1})).add_(t.at("bias"));
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  const int64_t h = boft::block_size(hp), m = boft::factors(hp);
  const at::Tensor& W = t.at("weight");
  const at::Tensor s = t.at("boft_s").view({-1});
  const auto F = factors(t.at("boft_R"), hp, x.size(1));
  std::vector<at::Tensor> inputs;
  const at::Tensor xm = rotate(F, x, h, &inputs);
  TorchGrads g;
  if (request.wants("boft_s")) g.dparams["boft_s"] = (dy * at::mm(xm, W.t())).sum(0).unsqueeze(1);
  const bool want_r = request.wants("boft_R");
  if (!request.dx && !want_r) return g;
  at::Tensor dz = at::mm(dy * s, W);  // d(X M): (N, d_in)
  std::vector<at::Tensor> dR(m);
  for (int64_t i = 0; i < m; ++i) {  // F_0 was applied last: undo it first
    const Factor& f = F[i];
    const at::Tensor dV = blocks(dz.index_select(1, f.gather_in), h);  // d of V = U·BD, by block (D, N, H)
    if (want_r) {
      const at::Tensor U = blocks(inputs[i].index_select(1, f.gather_in), h);
      const at::Tensor dS = oft::cayley_backward(f.S, at::bmm(U.transpose(1, 2), dV));
      dR[i] = (dS - dS.transpose(1, 2)).mul_(0.5);
    }
    dz = unblock(at::bmm(dV, f.Q.transpose(1, 2))).index_select(1, f.gather_out);
  }
  if (request.dx) g.dx = dz;
  if (want_r) g.dparams["boft_R"] = at::stack(dR);
  return g;
}

}  // namespace

const TorchImpl& boft_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
