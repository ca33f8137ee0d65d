// One cuda implementation for every adapter of the form  Y = X Wᵀ + b + ((S ⊙ c) B̂ᵀ) ⊙ o,  S = X Âᵀ,  c per rank,
// o per output (1 unless the adapter has an output gate): lora (c = s), my_lora (c = s·g), weight_lora (c = s·w),
// kasa (c = s·diag), adalora (c = s·E: A ⊙ E scales A's rows, so X (A ⊙ E)ᵀ = S ⊙ E), vera (c = λ_d, o = λ_b, with
// frozen random Â and B̂). An adapter describes its tensors' names, layouts and scaling in a GatedLowRank and gets
// forward and backward from `gated_lowrank_impl<desc>()`; nothing is written per adapter.
//
// Where the work goes (N tokens, d = d_in = d_out, r ≪ d): the base GEMM and dX's GEMM run in cuBLAS with the
// rank-r term as their C operand (beta = 1), so the adapter's output is added in the GEMM epilogue instead of by a
// separate pass over Y or dX; the gate is folded into the small B̂ (forward) or applied by the fused gate kernel
// on the (N, r) intermediate (backward). No dense ΔW is ever formed.
#pragma once
#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"

namespace gg {

struct GatedLowRank {
  const char* a;          // registry name of the down factor
  const char* b;          // registry name of the up factor
  bool a_rank_major;      // a is (r, d_in) (LoRA) rather than (d_in, r) (weight_lora)
  bool b_out_major;       // b is (d_out, r) (LoRA) rather than (r, d_out)
  enum class Gate { none, scalar, per_rank } gate;
  const char* gate_name;  // registry name of the gate (nullptr for none)
  bool lora_bias;         // honours the lora_bias hyper-parameter (LoRA's trainable bias on B)
  const char* out_gate = nullptr;  // registry name of a per-output gate o (d_out), VeRA's λ_b; nullptr: none
  bool factors_trainable = true;   // false: Â and B̂ are frozen (VeRA's shared projections), never differentiated
  double (*scaling)(const HyperParams&) = lowrank::scaling;  // s (AdaLoRA divides by r + 1e-5; VeRA has none)
};

at::Tensor gated_lowrank_forward(const GatedLowRank& d, const at::Tensor& x, const TorchTensors& t,
                                 const HyperParams& hp, TorchTensors* saved);
TorchGrads gated_lowrank_backward(const GatedLowRank& d, const at::Tensor& x, const TorchTensors& t,
                                  const HyperParams& hp, const at::Tensor& dy, const TorchTensors& saved,
                                  const GradRequest& request);

// TorchImpl holds plain function pointers: one captureless pair per descriptor (a static object of the adapter).
template <const GatedLowRank& D>
const TorchImpl& gated_lowrank_impl() {
  static const TorchImpl impl{
      [](const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
        return gated_lowrank_forward(D, x, t, hp, saved);
      },
      [](const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
         const TorchTensors& saved, const GradRequest& request) {
        return gated_lowrank_backward(D, x, t, hp, dy, saved, request);
      }};
  return impl;
}

}  // namespace gg
