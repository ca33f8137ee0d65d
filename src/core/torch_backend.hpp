// The LibTorch backend: per-adapter forward (composite, differentiable ATen ops) and analytic backward, plus one
// generic autograd-aware op that runs any registered adapter inside a live model with the analytic backward.
// Only ATen's Tensor header here; torch/torch.h stays in .cpp files (compile time, DESIGN.md §5).
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <set>
#include <string>

#include "core/registry.hpp"

namespace gg {

using TorchTensors = std::map<std::string, at::Tensor>;  // logical shapes, e.g. lora_gate (r,), weight_lora_w ()

struct TorchGrads {
  at::Tensor dx;           // (N, d_in)
  TorchTensors dparams;    // one per trainable tensor, same shape as the parameter
};

// Which gradients the caller needs: autograd asks only for those of inputs that require grad, and a backward that
// skips the rest saves whole GEMMs (dx = dY·W is as costly as the base layer's forward).
struct GradRequest {
  bool dx = true;
  std::set<std::string> params;  // empty together with all_params = true means every trainable tensor
  bool all_params = true;
  bool wants(const std::string& name) const { return all_params || params.count(name) > 0; }
};

struct TorchImpl {
  // x is (N, d_in). Built from differentiable ATen ops so that autograd through it is the "naive same-precision
  // implementation" baseline of the numerics policy; the op below never differentiates through it. When `saved` is
  // not null the adapter stores intermediates its backward can reuse instead of recomputing (e.g. S = X Aᵀ).
  at::Tensor (*forward)(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) =
      nullptr;
  // `saved` is what forward stored, or empty (then everything is recomputed); gradients not requested may be left
  // out of the result.
  TorchGrads (*backward)(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                         const TorchTensors& saved, const GradRequest& request) = nullptr;
  // The plain formula (e.g. forming ΔW densely as PEFT does), for adapters whose `forward` is a structured fast path:
  // the numerics policy's baseline is a *naive* same-precision implementation, and a structured path can be
  // markedly more accurate than that (LoKr's reshaped Kronecker product), which would hold every dense
  // implementation (the Eigen reference included) to a budget no plain implementation meets. Null: `forward` is it.
  at::Tensor (*naive_forward)(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) = nullptr;
};

// The naive forward of the numerics policy: `naive_forward` where the adapter has one, else `forward`.
at::Tensor naive_forward(const TorchImpl& impl, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp);

// A tensor the forward saved, or the recomputation when it did not.
template <class Recompute>
at::Tensor saved_or(const TorchTensors& saved, const char* name, Recompute&& recompute) {
  const auto it = saved.find(name);
  return it != saved.end() ? it->second : recompute();
}

// aᵀ·b for a (N, m) and b (N, k) with m >> k (weight gradients of rank-k factors): BLAS produces the wide (k, m)
// product much faster than the tall-skinny (m, k) one, so compute (bᵀ·a)ᵀ (measured ~5x at N=512, m=4096, k=8).
at::Tensor tall_tn(const at::Tensor& a, const at::Tensor& b);

// m·f for a thin right factor f (k, r), k >> r (projections onto the rank-r space): BLAS is ~2.5x faster when f is
// the transposed view of a contiguous (r, k) tensor than when f itself is contiguous (measured at N=512, k=4096,
// r=8); the copy of f costs k·r elements, nothing next to the GEMM.
at::Tensor thin_mm(const at::Tensor& m, const at::Tensor& f);

// Throws NotImplemented when the adapter has no torch backend.
const TorchImpl& torch_impl(const AdapterInfo& info);

// (d_in, d_out) read off tensors["weight"] (d_out, d_in); InputError when it is missing or not 2-D.
Dims dims_from_weight(const TorchTensors& t);

// The implementation of `backend` ("torch" or "cuda"); InputError for any other name, NotImplemented when the
// adapter has none.
const TorchImpl& backend_impl(const AdapterInfo& info, const std::string& backend);

// Checks x (..., d_in), every tensor's logical shape, one dtype and one device for all; names the argument and both
// shapes/dtypes on error. "torch": float32/float64 on any device; "cuda": float64/float32/bfloat16/float16 on a CUDA
// device; "naive" (the composite forward, the low-precision baseline): like torch, plus bfloat16/float16 on CUDA.
// Returns the dims read off the base weight.
Dims validate_torch_call(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp,
                         const std::string& backend = "torch");

// The autograd-aware op: y = adapter(x) with x of shape (..., d_in); gradients flow to x and to every trainable
// tensor in `t` that requires grad, computed by the backend's analytic backward. `hp` must be resolved.
at::Tensor adapter_apply(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp,
                         const std::string& backend = "torch");

// The torch backend's composite forward, differentiated by autograd (no analytic backward): the "naive
// same-precision implementation" of the numerics policy, in any dtype the device offers.
at::Tensor adapter_forward_naive(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t,
                                 const HyperParams& hp);

}  // namespace gg
