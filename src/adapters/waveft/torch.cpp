// WaveFT on LibTorch: every coefficient's basis image (the inverse wavelet transform of one grid entry) has at most
// L² non-zeros (4 for Haar), so ΔW is a sparse sum: the coefficients are expanded to their basis entries (the same
// geometry as the reference's basis()), scattered into a copy of W for one GEMM, and their gradient is read off the
// sampled entries of dYᵀX (sampled_products) — never the transform over the whole grid PEFT runs in float32.
#include <ATen/ATen.h>

#include <vector>

#include "adapters/waveft/eigen.hpp"
#include "core/sampled_products.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

// The non-zeros of every entry's basis image in ΔW's frame, before scaling: row, col, weight and the entry it
// belongs to (each entry once, weight 1, without use_idwt).
struct Expansion {
  at::Tensor rows, cols, weight, entry;
};

Expansion expand(const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor pos = t.at("waveft_indices").to(at::kLong);
  const at::Tensor& W = t.at("weight");
  const at::Tensor entry = at::arange(pos.size(1), pos.options());
  if (!waveft::use_idwt(hp)) return {pos[0], pos[1], at::ones({pos.size(1)}, W.options()), entry};
  const waveft::Geometry g(W.size(0), W.size(1), 2);
  const waveft::Filters f = waveft::haar();
  const int64_t h2 = g.Hp / 2, w2 = g.Wp / 2;
  const at::Tensor P = pos[0] + g.row_offset, Q = pos[1] + g.col_offset;
  // PEFT pairs D's top-right quadrant with outer(hi, lo): the filter along ΔW's rows follows the entry's column half
  const at::Tensor rows_hi = (Q >= w2).to(at::kDouble), cols_hi = (P >= h2).to(at::kDouble);
  const at::Tensor i = at::where(P < h2, P, P - h2), j = at::where(Q < w2, Q, Q - w2);
  std::vector<at::Tensor> rows, cols, weight, owner;
  for (int64_t a = 0; a < g.L; ++a)
    for (int64_t b = 0; b < g.L; ++b) {
      const at::Tensor r = 2 * i + (a - g.crop_r), c = 2 * j + (b - g.crop_c);
      const at::Tensor keep = (r >= 0) & (r < g.M) & (c >= 0) & (c < g.N);
      // filter taps chosen per entry, in double before the cast
      const at::Tensor w = (rows_hi * (f.hi[size_t(a)] - f.lo[size_t(a)]) + f.lo[size_t(a)]) *
                           (cols_hi * (f.hi[size_t(b)] - f.lo[size_t(b)]) + f.lo[size_t(b)]);
      rows.push_back(r.index({keep}));
      cols.push_back(c.index({keep}));
      weight.push_back(w.index({keep}).to(W.scalar_type()));
      owner.push_back(entry.index({keep}));
    }
  return {at::cat(rows), at::cat(cols), at::cat(weight), at::cat(owner)};
}

at::Tensor merged_weight(const TorchTensors& t, const HyperParams& hp, const Expansion& e) {
  const at::Tensor values = t.at("waveft_spectrum").index_select(0, e.entry) * e.weight * hp.at("scaling");
  return t.at("weight").clone().index_put_({e.rows, e.cols}, values, /*accumulate=*/true);
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors*) {
  return at::addmm(t.at("bias"), x, merged_weight(t, hp, expand(t, hp)).t());
}

// The numerics policy's naive baseline: ΔW formed as PEFT forms it, the whole padded grid through one stride-2
// conv_transpose2d with the outer products of the filters (PEFT's stacking ll, lh = outer(hi, lo), hl, hh), cropped.
at::Tensor naive_forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  const at::Tensor& W = t.at("weight");
  if (!waveft::use_idwt(hp)) return forward(x, t, hp, nullptr);  // ΔW is the scatter itself: nothing plainer
  const at::Tensor pos = t.at("waveft_indices").to(at::kLong);
  const waveft::Geometry g(W.size(0), W.size(1), 2);
  const waveft::Filters f = waveft::haar();
  const at::Tensor lo = at::tensor(f.lo, W.options()), hi = at::tensor(f.hi, W.options());
  const at::Tensor bank = at::stack({at::outer(lo, lo), at::outer(hi, lo), at::outer(lo, hi), at::outer(hi, hi)}).unsqueeze(1);
  const at::Tensor d = at::zeros({g.Hp, g.Wp}, W.options()).index_put_({pos[0] + g.row_offset, pos[1] + g.col_offset},
                                                                        t.at("waveft_spectrum"));
  const int64_t h2 = g.Hp / 2, w2 = g.Wp / 2;
  const at::Tensor top = d.slice(0, 0, h2), bottom = d.slice(0, h2);
  const at::Tensor quadrants = at::stack({top.slice(1, 0, w2), top.slice(1, w2), bottom.slice(1, 0, w2), bottom.slice(1, w2)}).unsqueeze(0);
  const at::Tensor r = at::conv_transpose2d(quadrants, bank, {}, 2).squeeze(0).squeeze(0);
  const at::Tensor dW = r.slice(0, g.crop_r, g.crop_r + g.M).slice(1, g.crop_c, g.crop_c + g.N) * hp.at("scaling");
  return at::addmm(t.at("bias"), x, (W + dW).t());
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors&, const GradRequest& request) {
  const Expansion e = expand(t, hp);
  TorchGrads g;
  if (request.wants("waveft_spectrum")) {
    const at::Tensor& c = t.at("waveft_spectrum");
    const at::Tensor per_entry = sampled_products(x, dy, e.rows, e.cols) * e.weight * hp.at("scaling");
    g.dparams["waveft_spectrum"] = at::zeros_like(c).index_add_(0, e.entry, per_entry);
  }
  if (request.dx) g.dx = at::mm(dy, merged_weight(t, hp, e));
  return g;
}

}  // namespace

const TorchImpl& waveft_torch() {
  static const TorchImpl impl{forward, backward, naive_forward};
  return impl;
}

}  // namespace gg
