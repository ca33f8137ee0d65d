// OFT on LibTorch: every block's rotation formed at once (batched H x H products), applied to X's blocks by one bmm;
// the backward goes through R(S) analytically (oft/eigen.hpp's formulas, batched). Nothing d_out x d_in is formed.
#include <ATen/ATen.h>

#include "adapters/oft/cayley_torch.hpp"
#include "adapters/oft/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Triangle {
  at::Tensor rows, cols;  // the strict upper triangle, row-major (torch.triu_indices, as PEFT)
};

Triangle triangle(int64_t h, const at::Device& device) {
  const at::Tensor idx = at::triu_indices(h, h, 1, at::TensorOptions().dtype(at::kLong).device(device));
  return {idx[0], idx[1]};
}

at::Tensor skew(const at::Tensor& w, int64_t h, const Triangle& tri) {  // (rp, P) -> (rp, H, H)
  at::Tensor S = at::zeros({w.size(0), h, h}, w.options());
  S.index_put_({at::indexing::Slice(), tri.rows, tri.cols}, w);
  return S - S.transpose(1, 2);
}

at::Tensor rotation(const at::Tensor& S, const HyperParams& hp) {
  const at::Tensor I = oft::eye_like(S);
  if (!oft::neumann(hp)) return oft::cayley(S);
  at::Tensor R = I.clone(), P = I;
  for (double c : oft::series(hp)) {
    P = at::bmm(P, S);
    R.add_(P, c);
  }
  return R;
}

at::Tensor rotation_backward(const at::Tensor& S, const at::Tensor& dR, const HyperParams& hp) {
  const at::Tensor I = oft::eye_like(S);
  if (!oft::neumann(hp)) return oft::cayley_backward(S, dR);
  const std::vector<double> c = oft::series(hp);
  std::vector<at::Tensor> powers_t{I};  // (S^j)ᵀ = (−S)^j for the skew S
  for (size_t k = 1; k < c.size(); ++k) powers_t.push_back(at::bmm(powers_t.back(), -S));
  at::Tensor dS = at::zeros_like(S);
  for (size_t k = 1; k <= c.size(); ++k)
    for (size_t j = 0; j < k; ++j) dS.add_(at::bmm(at::bmm(powers_t[j], dR), powers_t[k - 1 - j]), c[k - 1]);
  return dS;
}

// (N, nb·H) <-> (nb, N, H)
at::Tensor blocks(const at::Tensor& m, int64_t h) { return m.view({m.size(0), m.size(1) / h, h}).transpose(0, 1); }
at::Tensor unblock(const at::Tensor& b) { return b.transpose(0, 1).reshape({b.size(1), b.size(0) * b.size(2)}); }

at::Tensor block_rotations(const at::Tensor& R, int64_t nb) { return R.size(0) == 1 ? R.expand({nb, R.size(1), R.size(2)}) : R; }

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const int64_t h = oft::block_size(hp), nb = x.size(1) / h;
  const at::Tensor R = rotation(skew(t.at("oft_R"), h, triangle(h, x.device())), hp);  // (rp, H, H)
  if (saved) (*saved)["R"] = R;
  const at::Tensor xr = unblock(at::bmm(blocks(x, h), block_rotations(R, nb)));
  return at::addmm(t.at("bias"), xr, t.at("weight").t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const int64_t h = oft::block_size(hp), nb = x.size(1) / h;
  const at::Tensor& w = t.at("oft_R");
  const Triangle tri = triangle(h, x.device());
  const at::Tensor S = skew(w, h, tri);
  const at::Tensor R = saved_or(saved, "R", [&] { return rotation(S, hp); });
  const at::Tensor dxr = blocks(at::mm(dy, t.at("weight")), h);  // (nb, N, H)
  TorchGrads g;
  if (request.dx) g.dx = unblock(at::bmm(dxr, block_rotations(R, nb).transpose(1, 2)));
  if (request.wants("oft_R")) {
    at::Tensor dR = at::bmm(blocks(x, h).transpose(1, 2), dxr);  // (nb, H, H)
    if (w.size(0) == 1) dR = dR.sum(0, /*keepdim=*/true);        // block_share: one R for every block
    const at::Tensor dS = rotation_backward(S, dR, hp);
    g.dparams["oft_R"] = dS.index({at::indexing::Slice(), tri.rows, tri.cols}) -
                         dS.index({at::indexing::Slice(), tri.cols, tri.rows});
  }
  return g;
}

}  // namespace

const TorchImpl& oft_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
