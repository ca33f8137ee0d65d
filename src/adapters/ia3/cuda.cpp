// (IA)³ on the cuda backend. The vector l folds into W where that costs no pass over the activations, and both
// backward forms enter through the fused column_dot_scale (src/adapters/dora/kernels.cu), which gives the scaled
// gradient and dl in one pass instead of PEFT's three (dY ⊙ l, dY ⊙ Z, the column sum):
//   output form: Z = X Wᵀ + b is saved for dl (as PEFT's autograd saves base_layer(x)); Y = Z ⊙ l.
//                dZ = dY ⊙ l and dl = Σ_n dY ⊙ Z in one pass; dX = dZ W.
//   input form:  Y = X (W ⊙ l⁺)ᵀ + b: l⁺ scales W's columns (d_out·d_in values) instead of X (N·d_in), and nothing
//                but x is saved. dU = dY W; dX = dU ⊙ l⁺ and Σ_n dU ⊙ X in one pass; dl sums each channel's K columns.
// When dl is not requested, dX is one GEMM against the scaled W.
#include "adapters/ia3/eigen.hpp"
#include "core/cuda/aten_glue.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

// l⁺ (d_in): each channel's value repeated conv_kernel times (K = 1 for a Linear).
at::Tensor input_scale(const at::Tensor& l, const HyperParams& hp) {
  const int64_t k = ia3::conv_kernel(hp);
  return k == 1 ? l : l.repeat_interleave(k);
}

// W with l folded into its rows (output form) or columns (input form): one launch on W's d_out·d_in values.
at::Tensor scaled_weight(const at::Tensor& W, const at::Tensor& l, bool rows) {
  return W * (rows ? l.unsqueeze(1) : l.unsqueeze(0));
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const at::Tensor& W = t.at("weight");
  const at::Tensor& l = t.at("ia3_l");
  if (ia3::feedforward(hp)) return at::addmm(t.at("bias"), x, scaled_weight(W, input_scale(l, hp), false).t());
  const at::Tensor Z = at::addmm(t.at("bias"), x, W.t());  // (N, d_out)
  if (saved) (*saved)["Z"] = Z;
  return Z * l;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& W = t.at("weight");  // (d_out, d_in)
  const at::Tensor& l = t.at("ia3_l");   // (d_out), or (d_in / K) for the input form
  const bool input_form = ia3::feedforward(hp);
  TorchGrads g;
  if (!request.wants("ia3_l")) {
    if (request.dx) g.dx = at::mm(dy, input_form ? scaled_weight(W, input_scale(l, hp), false) : scaled_weight(W, l, true));
    return g;
  }
  if (input_form) {
    const auto [dX, colsum] = cuda::scale_and_column_dot(at::mm(dy, W), x, input_scale(l, hp));
    g.dparams["ia3_l"] = colsum.view({-1, ia3::conv_kernel(hp)}).sum(1).to(x.scalar_type());
    if (request.dx) g.dx = dX;
    return g;
  }
  const at::Tensor Z = saved_or(saved, "Z", [&] { return at::addmm(t.at("bias"), x, W.t()); });
  const auto [dZ, colsum] = cuda::scale_and_column_dot(dy, Z, l);
  g.dparams["ia3_l"] = colsum.to(x.scalar_type());
  if (request.dx) g.dx = at::mm(dZ, W);
  return g;
}

}  // namespace

const TorchImpl& ia3_cuda() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
