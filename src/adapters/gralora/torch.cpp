// GraLoRA on LibTorch: the k x k block pairs as two batched GEMMs over the k blocks (bmm), never a dense ΔW:
//   H = X_blocks A             (k, N, r)    one (N, di) x (di, r) product per input block
//   H2[j] = [H[n][:, slice j]]_n (k, N, r)   regroup the rank slices by output block (a permute, no arithmetic)
//   O = σ H2 B                 (k, N, do)   one product per output block
#include <ATen/ATen.h>

#include "adapters/gralora/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

// (k_from, N, k_to·s) -> (k_to, N, k_from·s): slice j of every block n becomes block j's slice n. Its own inverse.
at::Tensor regroup(const at::Tensor& h, int64_t k, int64_t s) {
  const int64_t n_rows = h.size(1);
  return h.view({k, n_rows, k, s}).permute({2, 1, 0, 3}).reshape({k, n_rows, k * s});
}

at::Tensor split_cols(const at::Tensor& m, int64_t k) {  // (N, k·w) -> (k, N, w)
  return m.view({m.size(0), k, m.size(1) / k}).transpose(0, 1);
}

at::Tensor join_cols(const at::Tensor& m) {  // (k, N, w) -> (N, k·w)
  return m.transpose(0, 1).reshape({m.size(1), m.size(0) * m.size(2)});
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const gralora::Blocks b = gralora::blocks(x.size(1), t.at("weight").size(0), hp);
  const double sigma = gralora::scaling(hp);
  const at::Tensor H2 = regroup(at::bmm(split_cols(x, b.k), t.at("gralora_A")), b.k, b.s);  // (k, N, r)
  if (saved) (*saved)["H2"] = H2;
  at::Tensor y = at::addmm(t.at("bias"), x, t.at("weight").t());
  y.add_(join_cols(at::bmm(H2, t.at("gralora_B"))), sigma);
  if (gralora::has_hybrid(hp))
    y.addmm_(at::mm(x, t.at("gralora_A_general").t()), t.at("gralora_B_general").t(), 1.0, sigma);
  return y;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const gralora::Blocks b = gralora::blocks(x.size(1), t.at("weight").size(0), hp);
  const double sigma = gralora::scaling(hp);
  const at::Tensor& A = t.at("gralora_A");  // (k, di, r)
  const at::Tensor& B = t.at("gralora_B");  // (k, r, do)
  const at::Tensor xb = split_cols(x, b.k);    // (k, N, di)
  const at::Tensor G = split_cols(dy, b.k);    // (k, N, do)
  TorchGrads g;
  if (request.wants("gralora_B")) {
    const at::Tensor H2 = saved_or(saved, "H2", [&] { return regroup(at::bmm(xb, A), b.k, b.s); });
    g.dparams["gralora_B"] = at::bmm(H2.transpose(1, 2), G).mul_(sigma);  // (k, r, do)
  }
  const bool hybrid = gralora::has_hybrid(hp);
  at::Tensor dS;  // hybrid branch: (N, hr)
  if (hybrid && (request.dx || request.wants("gralora_A_general"))) dS = at::mm(dy, t.at("gralora_B_general")).mul_(sigma);
  if (hybrid && request.wants("gralora_B_general"))
    g.dparams["gralora_B_general"] = at::mm(dy.t(), at::mm(x, t.at("gralora_A_general").t())).mul_(sigma);
  if (hybrid && request.wants("gralora_A_general")) g.dparams["gralora_A_general"] = at::mm(dS.t(), x);
  if (!request.dx && !request.wants("gralora_A")) return g;
  const at::Tensor dH = regroup(at::bmm(G, B.transpose(1, 2)).mul_(sigma), b.k, b.s);  // (k, N, r) by input block
  if (request.wants("gralora_A")) g.dparams["gralora_A"] = at::bmm(xb.transpose(1, 2), dH);  // (k, di, r)
  if (request.dx) {
    g.dx = join_cols(at::bmm(dH, A.transpose(1, 2))).addmm_(dy, t.at("weight"));
    if (hybrid) g.dx.addmm_(dS, t.at("gralora_A_general"));
  }
  return g;
}

}  // namespace

const TorchImpl& gralora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
