// HRA on LibTorch: X Hᵀ = X R_{r−1} ⋯ R₀ applied as r reflections of X's rows (z ← z − 2 (z·û) ûᵀ), never H
// (d_in × d_in) nor W H (a base-sized GEMM per step, which PEFT's layer pays).
// Backward through each reflection, last applied first: with z_out = R z_in,
//   dz_in = R dz_out,   dû −= 2 (dZ_outᵀ (Z_in û) + Z_inᵀ (dZ_out û)).
// Each Z_in is recomputed from X (r(r−1)/2 reflections in all, ~r²·2·N·d_in flops: ~2% of the base GEMM at r = 8,
// d = 4096) rather than stored (r copies of X) or recovered by reflecting Z_out back (R² = I, but in float32 that
// measured 1.3-2.5× the dense formula's error on hra_u's gradient; recomputing from X is below it).
#include <ATen/ATen.h>

#include "core/torch_backend.hpp"

namespace gg {
namespace {

at::Tensor reflect(const at::Tensor& z, const at::Tensor& uh) {  // z (N, d), uh (d): z − 2 (z·û) ûᵀ
  return z - 2 * at::outer(at::mv(z, uh), uh);
}

at::Tensor unit(const at::Tensor& u) { return u / at::linalg_vector_norm(u, 2, {0}, true); }

at::Tensor reflected(const at::Tensor& x, const at::Tensor& uh) {  // X Hᵀ
  at::Tensor z = x;
  for (int64_t i = uh.size(1) - 1; i >= 0; --i) z = reflect(z, uh.select(1, i));
  return z;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, TorchTensors* saved) {
  return at::addmm(t.at("bias"), reflected(x, unit(t.at("hra_u"))), t.at("weight").t());
}

// The input of reflection i: X reflected by R_{r−1}, …, R_{i+1}.
at::Tensor reflection_input(const at::Tensor& x, const at::Tensor& uh, int64_t i) {
  at::Tensor z = x;
  for (int64_t j = uh.size(1) - 1; j > i; --j) z = reflect(z, uh.select(1, j));
  return z;
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams&, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  const at::Tensor& u = t.at("hra_u");
  const at::Tensor uh = unit(u);
  at::Tensor dZ = at::mm(dy, t.at("weight"));  // (N, d_in)
  const bool want_u = request.wants("hra_u");
  at::Tensor duh = want_u ? at::zeros_like(u) : at::Tensor();
  for (int64_t i = 0; i < u.size(1); ++i) {  // reflections in reverse order of application: R₀ was applied last
    const at::Tensor v = uh.select(1, i);
    if (want_u) {
      const at::Tensor Zin = reflection_input(x, uh, i);
      duh.select(1, i).copy_(-2 * (at::mv(dZ.t(), at::mv(Zin, v)) + at::mv(Zin.t(), at::mv(dZ, v))));
    }
    dZ = reflect(dZ, v);
  }
  TorchGrads g;
  if (want_u) {  // through û = u/‖u‖ per column
    const at::Tensor n = at::linalg_vector_norm(u, 2, {0}, true);
    g.dparams["hra_u"] = (duh - uh * (uh * duh).sum(0, true)) / n;
  }
  if (request.dx) g.dx = dZ;
  return g;
}

// The naive baseline: H formed densely and W H, as PEFT's layer does.
at::Tensor naive(const at::Tensor& x, const TorchTensors& t, const HyperParams&) {
  const at::Tensor uh = unit(t.at("hra_u"));
  at::Tensor H = at::eye(uh.size(0), uh.options());
  for (int64_t i = 0; i < uh.size(1); ++i) H = H - 2 * at::mm(at::mm(H, uh.narrow(1, i, 1)), uh.narrow(1, i, 1).t());
  return at::addmm(t.at("bias"), x, at::mm(t.at("weight"), H).t());
}

}  // namespace

const TorchImpl& hra_torch() {
  static const TorchImpl impl{forward, backward, naive};
  return impl;
}

}  // namespace gg
