// DoRA on the cuda backend. The weight norm ‖W + s·BA‖ per row comes from one fused pass over W
// (row_norms_project: ‖W_i‖² and W Aᵀ) plus rank-r algebra, ‖V_i‖² = ‖W_i‖² + 2s·B_i·(WAᵀ)_i + s²·B_i (AAᵀ) B_iᵀ,
// so V (d_out × d_in) is never formed; the backward enters through the fused column_dot_scale (dP = dY ⊙ g and
// Σ_n dY ⊙ P in one pass). exact_gradient's extra terms also stay rank-r: dV Aᵀ and Bᵀ dV expand through W Aᵀ,
// AAᵀ and Bᵀ diag(·) W.
#include "core/cuda/aten_glue.hpp"
#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Norms {
  at::Tensor n;   // ‖V_i‖ (d_out), accumulation dtype
  at::Tensor WA;  // W Aᵀ (d_out, r), accumulation dtype
  at::Tensor M;   // A Aᵀ (r, r), accumulation dtype
};

Norms weight_norms(const TorchTensors& t, double s) {
  const at::Tensor& W = t.at("weight");
  const at::Tensor& A = t.at("lora_A");
  const at::Tensor& B = t.at("lora_B");
  const int64_t d_out = W.size(0), d_in = W.size(1), r = A.size(0);
  const auto acc = cuda::acc_dtype(W);
  const at::Tensor Af = A.to(acc);
  Norms out;
  out.M = at::mm(Af, Af.t());
  at::Tensor sumsq;
  if (r <= cuda::row_norms_max_rank()) {
    sumsq = at::empty({d_out}, W.options().dtype(acc));
    out.WA = at::empty({d_out, r}, W.options().dtype(acc));
    const at::Tensor Wc = W.contiguous(), Ac = A.contiguous();
    cuda::row_norms_project(cuda::dtype_of(W), Wc.data_ptr(), Ac.data_ptr(), sumsq.data_ptr(), out.WA.data_ptr(), d_out,
                            d_in, r, cuda::stream());
  } else {  // ranks above the kernel's register budget: the same quantities through cuBLAS
    const at::Tensor Wf = W.to(acc);
    sumsq = Wf.square().sum(1);
    out.WA = at::mm(Wf, Af.t());
  }
  const at::Tensor Bf = B.to(acc);
  const at::Tensor sq = sumsq + (Bf * out.WA).sum(1) * (2 * s) + (at::mm(Bf, out.M) * Bf).sum(1) * (s * s);
  out.n = sq.clamp_min(0).sqrt();
  return out;
}

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  const double s = lowrank::scaling(hp);
  const auto given = t.find("weight_norm");  // the detached constant, when the caller holds it fixed
  Norms norms;
  if (given != t.end()) norms.n = given->second.to(cuda::acc_dtype(x));
  else norms = weight_norms(t, s);
  const at::Tensor g = t.at("lora_magnitude_vector").to(norms.n.scalar_type()) / norms.n;  // (d_out)
  const at::Tensor S = at::mm(x, t.at("lora_A").t());                                      // (N, r)
  at::Tensor P = at::mm(S, t.at("lora_B").t() * s);                                         // (N, d_out)
  P.addmm_(x, t.at("weight").t());  // P = X Vᵀ: base GEMM with the rank-r term as its C operand
  if (saved) {
    *saved = {{"S", S}, {"P", P}, {"n", norms.n}, {"g", g}};
    if (norms.WA.defined()) { (*saved)["WA"] = norms.WA; (*saved)["M"] = norms.M; }
  }
  return at::addcmul(t.at("bias"), P, g.to(x.scalar_type()));
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved_in, const GradRequest& request) {
  const double s = lowrank::scaling(hp);
  const bool exact = hp.at("exact_gradient") != 0.0;
  TorchTensors saved = saved_in;
  if (!saved.count("P")) forward(x, t, hp, &saved);  // recompute everything the backward reads
  const at::Tensor& A = t.at("lora_A");
  const at::Tensor& B = t.at("lora_B");
  const at::Tensor &S = saved.at("S"), &P = saved.at("P"), &n = saved.at("n"), &g = saved.at("g");
  // dP = dY ⊙ g and colsum = Σ_n dY ⊙ P in one pass (src/adapters/dora/kernels.cu).
  const auto [dP, colsum] = cuda::scale_and_column_dot(dy, P, g);
  TorchGrads out;
  if (request.wants("lora_magnitude_vector")) out.dparams["lora_magnitude_vector"] = (colsum / n).to(x.scalar_type());
  // exact_gradient: dV = coef ⊙rows V with coef = −colsum·m/n³, so s·dV Aᵀ = s·coef ⊙rows (W Aᵀ + s·B AAᵀ) and
  // s·Bᵀ dV = s·(B ⊙ coef)ᵀ W + s²·(B ⊙ coef)ᵀ B A.
  at::Tensor coef;
  if (exact) {
    if (!saved.count("WA")) {
      const Norms norms = weight_norms(t, s);
      saved["WA"] = norms.WA;
      saved["M"] = norms.M;
    }
    coef = -colsum * t.at("lora_magnitude_vector").to(colsum.scalar_type()) / n.pow(3);
  }
  const at::Tensor Bf = exact ? B.to(coef.scalar_type()) : at::Tensor();
  if (request.wants("lora_B")) {
    at::Tensor dB = at::mm(dP.t(), S).mul_(s);  // (d_out, r)
    if (exact) dB = (dB.to(coef.scalar_type()) + (saved.at("WA") + at::mm(Bf, saved.at("M")) * s) * (coef * s).unsqueeze(1)).to(x.scalar_type());
    out.dparams["lora_B"] = dB;
  }
  if (!request.dx && !request.wants("lora_A")) return out;
  const at::Tensor dS = at::mm(dP, B).mul_(s);  // (N, r)
  if (request.wants("lora_A")) {
    at::Tensor dA = at::mm(dS.t(), x);  // (r, d_in)
    if (exact) {
      const at::Tensor Bc = Bf * coef.unsqueeze(1);  // (d_out, r)
      const at::Tensor extra = at::mm(Bc.t().to(x.scalar_type()), t.at("weight")).to(coef.scalar_type()) * s +
                               at::mm(at::mm(Bc.t(), Bf), A.to(coef.scalar_type())) * (s * s);
      dA = (dA.to(coef.scalar_type()) + extra).to(x.scalar_type());
    }
    out.dparams["lora_A"] = dA;
  }
  if (request.dx) out.dx = at::mm(dS, A).addmm_(dP, t.at("weight"));  // base GEMM with the adapter term as C
  return out;
}

}  // namespace

const TorchImpl& dora_cuda() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
