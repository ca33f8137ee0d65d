// SHiRA on LibTorch. Forward and dX use the merged weight W + ΔW (a K-entry scatter into a copy of W, then the GEMM
// the base layer needs anyway: no work per row beyond the base). The values' gradient dv_k = ⟨dY[:, p_k], X[:, q_k]⟩
// is read off the K sampled entries (sampled_products), not the dense dYᵀX PEFT's autograd forms.
#include <ATen/ATen.h>

#include "core/sampled_products.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

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

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  TorchGrads g;
  if (request.wants("shira_weight")) {
    const Entries e = entries(t);
    g.dparams["shira_weight"] = sampled_products(x, dy, e.rows, e.cols);
  }
  if (request.dx) g.dx = at::mm(dy, merged_weight(t));
  return g;
}

}  // namespace

const TorchImpl& shira_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
