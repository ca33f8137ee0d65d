// SHiRA on LibTorch. Forward and dX use the merged weight W + ΔW (a K-entry scatter into a copy of W, then the GEMM
// the base layer needs anyway: no work per row beyond the base). The values' gradient dv_k = ⟨dY[:, p_k], X[:, q_k]⟩
// is read off only the K sampled entries while K is a small share of the weight (gathers of feature-major copies of
// dY and X, in chunks that bound the temporaries), and off the dense dYᵀX, as PEFT's autograd computes it, when K
// is a large share and one GEMM is cheaper than the gathers.
#include <ATen/ATen.h>

#include "core/torch_backend.hpp"

namespace gg {
namespace {

constexpr int64_t kChunkElements = int64_t{1} << 22;  // ~16 MB of float32 per gathered temporary
// A gathered entry costs a memory-bound read of 2N values; the GEMM's N·d_in·d_out multiply-adds run ~30x faster per
// element on BLAS, so the gathers win while K < d_in·d_out / 32.
constexpr int64_t kGatherShare = 32;

struct Entries {
  at::Tensor rows, cols;  // (K) int64
};

Entries entries(const TorchTensors& t) {
  const at::Tensor pos = t.at("shira_indices").to(at::kLong);
  return {pos[0], pos[1]};
}

at::Tensor merged_weight(const TorchTensors& t) {
  const Entries e = entries(t);
  return t.at("weight").clone().index_put_({e.rows, e.cols}, t.at("shira_weight"), /*accumulate=*/true);
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, TorchTensors*) {
  return at::addmm(t.at("bias"), x, merged_weight(t).t());
}

at::Tensor values_grad(const at::Tensor& x, const at::Tensor& dy, const Entries& e, const at::Tensor& v) {
  const int64_t k = v.size(0), n = x.size(0);
  if (k * kGatherShare >= x.size(1) * dy.size(1)) return at::mm(dy.t(), x).index({e.rows, e.cols});
  const at::Tensor x_t = x.t().contiguous(), dy_t = dy.t().contiguous();  // (d_in, N), (d_out, N)
  at::Tensor dv = at::empty_like(v);
  const int64_t step = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, n));
  for (int64_t k0 = 0; k0 < k; k0 += step) {
    const int64_t k1 = std::min(k, k0 + step);
    dv.slice(0, k0, k1).copy_((dy_t.index_select(0, e.rows.slice(0, k0, k1)) * x_t.index_select(0, e.cols.slice(0, k0, k1))).sum(1));
  }
  return dv;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  TorchGrads g;
  if (request.wants("shira_weight")) g.dparams["shira_weight"] = values_grad(x, dy, entries(t), t.at("shira_weight"));
  if (request.dx) g.dx = at::mm(dy, merged_weight(t));
  return g;
}

}  // namespace

const TorchImpl& shira_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
