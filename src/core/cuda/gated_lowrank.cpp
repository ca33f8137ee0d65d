#include "core/cuda/gated_lowrank.hpp"

#include "core/cuda/aten_glue.hpp"

namespace gg {
namespace {

struct Factors {
  at::Tensor A;  // Â (r, d_in): a view, no copy (cuBLAS takes the transposed layout as a flag)
  at::Tensor B;  // B̂ (d_out, r)
};

Factors factors(const GatedLowRank& d, const TorchTensors& t) {
  const at::Tensor& a = t.at(d.a);
  const at::Tensor& b = t.at(d.b);
  return {d.a_rank_major ? a : a.t(), d.b_out_major ? b : b.t()};
}

// The per-rank factor c = scaling × gate, as an (r) tensor of `dtype`.
at::Tensor column_scale(const GatedLowRank& d, const TorchTensors& t, double s, int64_t r, at::ScalarType dtype,
                        const at::Tensor& like) {
  switch (d.gate) {
    case GatedLowRank::Gate::none: return at::full({r}, s, like.options().dtype(dtype));
    case GatedLowRank::Gate::scalar: return (t.at(d.gate_name).to(dtype) * s).expand({r}).contiguous();
    case GatedLowRank::Gate::per_rank: return t.at(d.gate_name).to(dtype).reshape({r}) * s;  // AdaLoRA's E is (r, 1)
  }
  return {};
}

// The output gate o (d_out) in `dtype`, or an undefined tensor when the adapter has none.
at::Tensor out_scale(const GatedLowRank& d, const TorchTensors& t, at::ScalarType dtype) {
  return d.out_gate ? t.at(d.out_gate).to(dtype) : at::Tensor();
}

// (rows, cols) = alpha · a·b in one GEMM (beta = 0: the output's initial content is ignored, so the scaling costs
// no extra pass).
at::Tensor scaled_mm(const at::Tensor& a, const at::Tensor& b, double alpha) {
  return at::addmm(at::empty({a.size(0), b.size(1)}, a.options()), a, b, /*beta=*/0, alpha);
}

}  // namespace

at::Tensor gated_lowrank_forward(const GatedLowRank& d, const at::Tensor& x, const TorchTensors& t,
                                 const HyperParams& hp, TorchTensors* saved) {
  const Factors f = factors(d, t);
  const double s = d.scaling(hp);
  const at::Tensor S = at::mm(x, f.A.t());  // (N, r)
  if (saved) (*saved)["S"] = S;
  at::Tensor bias = t.at("bias");
  if (d.lora_bias && hp.at("lora_bias") != 0.0) bias = bias + t.at("lora_B_bias") * s;
  at::Tensor y;
  if (d.gate == GatedLowRank::Gate::none && !d.out_gate) {
    y = at::addmm(bias, S, f.B.t(), /*beta=*/1, /*alpha=*/s);  // the scaling rides on the GEMM's alpha: no launch
  } else {
    // The gates ride on the small B̂ (d_out × r): two or three launches on r·d_out values, never on N, in x's dtype
    // (a float32 copy of B̂ would add two launches per call).
    at::Tensor cs = d.gate == GatedLowRank::Gate::none     ? at::scalar_tensor(s, f.B.options())
                    : d.gate == GatedLowRank::Gate::scalar ? t.at(d.gate_name) * s
                                                           : (t.at(d.gate_name) * s).reshape({1, -1});  // (1, r)
    if (d.out_gate) cs = t.at(d.out_gate).unsqueeze(1) * cs;  // (d_out, r) or (d_out, 1): o ⊗ c
    y = at::addmm(bias, S, (f.B * cs).t());
  }
  return y.addmm_(x, t.at("weight").t());      // base GEMM with y as its C operand (beta = 1)
}

TorchGrads gated_lowrank_backward(const GatedLowRank& d, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp,
                    const at::Tensor& dy, const TorchTensors& saved, const GradRequest& request) {
  const Factors f = factors(d, t);
  const double s = d.scaling(hp);
  const at::Tensor S = saved_or(saved, "S", [&] { return at::mm(x, f.A.t()); });  // (N, r)
  const int64_t n = x.size(0), r = f.A.size(0);
  const at::Tensor c = column_scale(d, t, s, r, cuda::acc_dtype(x), x);  // (r), accumulation dtype
  const at::Tensor o = out_scale(d, t, c.scalar_type());                  // (d_out) or undefined
  TorchGrads g;
  const bool want_B = d.factors_trainable && request.wants(d.b);
  const bool want_o = d.out_gate && request.wants(d.out_gate);
  if (want_B && d.gate == GatedLowRank::Gate::none && !o.defined()) {
    // dB̂ = s·dYᵀ S: the scaling folds into the GEMM's alpha.
    const at::Tensor dB = scaled_mm(dy.t(), S, s);
    g.dparams[d.b] = d.b_out_major ? dB : dB.t().contiguous();
  } else if (want_B || want_o) {
    // M = dYᵀ (S ⊙ c) (d_out, r) is the gradient of the folded B̂ ⊙ o: dB̂ = M ⊙ o (rows), do = Σ_j B̂ ⊙ M. A gate
    // scales the small result, never the (N, r) S.
    const at::Tensor M = at::mm(dy.t(), S).to(c.scalar_type()) * c;
    if (want_o) g.dparams[d.out_gate] = (M * f.B.to(c.scalar_type())).sum(1).to(x.scalar_type());
    if (want_B) {
      const at::Tensor dB = (o.defined() ? M * o.unsqueeze(1) : M).to(x.scalar_type());
      g.dparams[d.b] = d.b_out_major ? dB : dB.t().contiguous();
    }
  }
  if (d.lora_bias && hp.at("lora_bias") != 0.0 && request.wants("lora_B_bias"))
    g.dparams["lora_B_bias"] = dy.sum(0).mul_(s);
  const bool gate_wanted = d.gate != GatedLowRank::Gate::none && request.wants(d.gate_name);
  const bool want_A = d.factors_trainable && request.wants(d.a);
  if (!request.dx && !want_A && !gate_wanted) return g;
  // U = dY (B̂ ⊙ o): the output gate rides on the small B̂ here too.
  const at::Tensor U = at::mm(dy, o.defined() ? (f.B.to(o.scalar_type()) * o.unsqueeze(1)).to(x.scalar_type()) : f.B);
  // dS = U ⊙ c and colsum_j = Σ_n U ⊙ S in one pass (src/core/cuda/gated_rank.cu).
  at::Tensor dS = at::empty_like(U);
  at::Tensor colsum = at::empty({r}, c.options());
  at::Tensor ws = cuda::workspace(cuda::gated_rank_grad_workspace(cuda::dtype_of(U), n, r), U);
  cuda::gated_rank_grad(cuda::dtype_of(U), U.data_ptr(), S.contiguous().data_ptr(), c.data_ptr(), dS.data_ptr(),
                        colsum.data_ptr(), n, r, ws.data_ptr(), cuda::stream());
  if (gate_wanted) {
    // dL/dgate: s·Σ_n U ⊙ S per rank (my_lora, kasa, adalora, vera), summed over the ranks for a scalar gate
    // (weight_lora).
    const at::Tensor gate_grad = d.gate == GatedLowRank::Gate::scalar ? colsum.sum() * s : colsum * s;
    g.dparams[d.gate_name] = gate_grad.to(x.scalar_type()).reshape(t.at(d.gate_name).sizes());
  }
  if (want_A) g.dparams[d.a] = d.a_rank_major ? at::mm(dS.t(), x) : at::mm(x.t(), dS);
  if (request.dx) g.dx = at::mm(dS, f.A).addmm_(dy, t.at("weight"));  // base GEMM with the adapter term as C
  return g;
}

}  // namespace gg
