// WaveFT on LibTorch: ΔW built as PEFT builds it (sparse coefficients scattered into the padded grid, its four
// quadrants through one stride-2 conv_transpose2d with the outer products of the reconstruction filters, cropped), but
// in the tensors' own precision, and merged into W so the forward is one GEMM. The coefficients' gradient is the
// adjoint: G = dYᵀ X placed back in the uncropped frame, one stride-2 conv2d with the same filters, read at the
// entries.
#include <ATen/ATen.h>

#include "adapters/waveft/eigen.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Entries {
  at::Tensor rows, cols;  // (n) int64, in the d_out x d_in grid
};

Entries entries(const TorchTensors& t) {
  const at::Tensor pos = t.at("waveft_indices").to(at::kLong);
  return {pos[0], pos[1]};
}

// (4, 1, L, L): PEFT's stacking of the 2-D filters, ll, lh = outer(hi, lo), hl = outer(lo, hi), hh.
at::Tensor filter_bank(const at::TensorOptions& options) {
  const waveft::Filters f = waveft::haar();
  const at::Tensor lo = at::tensor(f.lo, options), hi = at::tensor(f.hi, options);
  return at::stack({at::outer(lo, lo), at::outer(hi, lo), at::outer(lo, hi), at::outer(hi, hi)}).unsqueeze(1);
}

// The padded grid's quadrants as the conv's 4 input channels, (1, 4, Hp/2, Wp/2), and back.
at::Tensor quadrants(const at::Tensor& d, const waveft::Geometry& g) {
  const int64_t h2 = g.Hp / 2, w2 = g.Wp / 2;
  const at::Tensor top = d.slice(0, 0, h2), bottom = d.slice(0, h2);
  return at::stack({top.slice(1, 0, w2), top.slice(1, w2), bottom.slice(1, 0, w2), bottom.slice(1, w2)}).unsqueeze(0);
}

at::Tensor grid(const at::Tensor& q) {  // inverse of quadrants
  const at::Tensor c = q.squeeze(0);
  return at::cat({at::cat({c[0], c[1]}, 1), at::cat({c[2], c[3]}, 1)}, 0);
}

at::Tensor delta_weight(const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor& W = t.at("weight");
  const at::Tensor& c = t.at("waveft_spectrum");
  const Entries e = entries(t);
  const double s = hp.at("scaling");
  if (!waveft::use_idwt(hp)) return at::zeros_like(W).index_put_({e.rows, e.cols}, c) * s;
  const waveft::Geometry g(W.size(0), W.size(1), 2);
  const at::Tensor d = at::zeros({g.Hp, g.Wp}, W.options()).index_put_({e.rows + g.row_offset, e.cols + g.col_offset}, c);
  const at::Tensor r = at::conv_transpose2d(quadrants(d, g), filter_bank(W.options()), {}, 2).squeeze(0).squeeze(0);
  return r.slice(0, g.crop_r, g.crop_r + g.M).slice(1, g.crop_c, g.crop_c + g.N) * s;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors*) {
  return at::addmm(t.at("bias"), x, (t.at("weight") + delta_weight(t, hp)).t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  const at::Tensor& W = t.at("weight");
  TorchGrads g;
  if (request.wants("waveft_spectrum")) {
    const Entries e = entries(t);
    const at::Tensor G = at::mm(dy.t(), x) * hp.at("scaling");  // (d_out, d_in)
    if (!waveft::use_idwt(hp)) {
      g.dparams["waveft_spectrum"] = G.index({e.rows, e.cols});
    } else {
      const waveft::Geometry geo(W.size(0), W.size(1), 2);
      const at::Tensor bank = filter_bank(W.options());
      const int64_t rows = 2 * (geo.Hp / 2 - 1) + geo.L, cols = 2 * (geo.Wp / 2 - 1) + geo.L;
      at::Tensor full = at::zeros({rows, cols}, W.options());
      full.slice(0, geo.crop_r, geo.crop_r + geo.M).slice(1, geo.crop_c, geo.crop_c + geo.N).copy_(G);
      const at::Tensor dgrid = grid(at::conv2d(full.unsqueeze(0).unsqueeze(0), bank, {}, 2));  // (Hp, Wp)
      g.dparams["waveft_spectrum"] = dgrid.index({e.rows + geo.row_offset, e.cols + geo.col_offset});
    }
  }
  if (request.dx) g.dx = at::mm(dy, W + delta_weight(t, hp));
  return g;
}

}  // namespace

const TorchImpl& waveft_torch() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
