// VB-LoRA on LibTorch: the mixtures as one topk + softmax + gather over all tiles of a factor, then LoRA's rank-r
// path on thin intermediates (the factors are r-thin; ΔW is never formed). The backward scatters each tile's
// gradient to its k logits and bank vectors (index_add_ for the bank, which several tiles share).
#include <ATen/ATen.h>

#include "adapters/vblora/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Mixture {
  at::Tensor idx, w, out;  // (R, k) selected vectors, (R, k) softmax weights, (R, L) mixtures
};

Mixture mix(const at::Tensor& logits, const at::Tensor& bank, int64_t k) {
  const at::Tensor rows = logits.reshape({-1, logits.size(-1)});
  auto [top, idx] = rows.topk(k, -1);
  const at::Tensor w = top.softmax(-1);
  const at::Tensor picked = bank.index_select(0, idx.flatten()).view({idx.size(0), k, bank.size(1)});
  return {idx, w, (w.unsqueeze(-1) * picked).sum(1)};
}

// dlogits (logits' shape) and the bank's share for upstream dmix (R, L).
void mix_backward(const at::Tensor& logits, const at::Tensor& bank, const Mixture& m, const at::Tensor& dmix,
                  at::Tensor& dlogits, at::Tensor& dbank) {
  const int64_t k = m.idx.size(1), L = bank.size(1);
  const at::Tensor picked = bank.index_select(0, m.idx.flatten()).view({m.idx.size(0), k, L});
  const at::Tensor dw = (dmix.unsqueeze(1) * picked).sum(-1);                         // (R, k)
  const at::Tensor dtop = m.w * (dw - (m.w * dw).sum(-1, true));                      // softmax backward
  dlogits = at::zeros({m.idx.size(0), logits.size(-1)}, logits.options()).scatter_(1, m.idx, dtop).view(logits.sizes());
  dbank.index_add_(0, m.idx.flatten(), (m.w.unsqueeze(-1) * dmix.unsqueeze(1)).reshape({-1, L}));
}

struct Factors {
  Mixture a, b;
  at::Tensor A, B;  // (r, d_in), (d_out, r)
};

Factors factors(const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor& bank = t.at("vblora_vector_bank");
  const at::Tensor& la = t.at("vblora_logits_A");  // (r, d_in/L, nv)
  const at::Tensor& lb = t.at("vblora_logits_B");  // (d_out/L, r, nv)
  Factors f{mix(la, bank, vblora::topk(hp)), mix(lb, bank, vblora::topk(hp)), {}, {}};
  f.A = f.a.out.reshape({la.size(0), -1});
  f.B = f.b.out.view({lb.size(0), lb.size(1), -1}).transpose(1, 2).reshape({-1, lb.size(1)});
  return f;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const Factors f = factors(t, hp);
  const at::Tensor S = at::mm(x, f.A.t());  // (N, r)
  if (saved) (*saved)["S"] = S;
  return at::addmm(t.at("bias"), x, t.at("weight").t()).addmm_(S, f.B.t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const Factors f = factors(t, hp);
  const at::Tensor dS = at::mm(dy, f.B);  // (N, r)
  TorchGrads g;
  const bool bank_wanted = request.wants("vblora_vector_bank");
  const at::Tensor& bank = t.at("vblora_vector_bank");
  at::Tensor dbank = at::zeros_like(bank), dlogits;
  // Each factor's mixtures feed its own logits and the shared bank: a factor's backward runs when either is asked.
  if (request.wants("vblora_logits_A") || bank_wanted) {
    const at::Tensor dA = at::mm(dS.t(), x);  // (r, d_in): its storage is the mixture rows
    mix_backward(t.at("vblora_logits_A"), bank, f.a, dA.reshape({-1, bank.size(1)}), dlogits, dbank);
    if (request.wants("vblora_logits_A")) g.dparams["vblora_logits_A"] = dlogits;
  }
  if (request.wants("vblora_logits_B") || bank_wanted) {
    const at::Tensor& lb = t.at("vblora_logits_B");
    const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, f.A.t()); });
    const at::Tensor dB = tall_tn(dy, S);  // (d_out, r)
    // dB's (tile, rank) rows: B[τL + l, i] came from mixture row τ r + i.
    const at::Tensor dmix_B = dB.view({lb.size(0), -1, lb.size(1)}).transpose(1, 2).reshape({-1, bank.size(1)});
    mix_backward(lb, bank, f.b, dmix_B, dlogits, dbank);
    if (request.wants("vblora_logits_B")) g.dparams["vblora_logits_B"] = dlogits;
  }
  if (bank_wanted) g.dparams["vblora_vector_bank"] = dbank;
  if (request.dx) g.dx = at::mm(dy, t.at("weight")).addmm_(dS, f.A);
  return g;
}

}  // namespace

const TorchImpl& vblora_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
