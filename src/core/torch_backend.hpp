// The LibTorch backend: per-adapter forward (composite, differentiable ATen ops) and analytic backward, plus one
// generic autograd-aware op that runs any registered adapter inside a live model with the analytic backward.
// Only ATen's Tensor header here; torch/torch.h stays in .cpp files (compile time, DESIGN.md §5).
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "core/registry.hpp"

namespace gg {

using TorchTensors = std::map<std::string, at::Tensor>;  // logical shapes, e.g. lora_gate (r,), weight_lora_w ()

struct TorchGrads {
  at::Tensor dx;           // (N, d_in)
  TorchTensors dparams;    // one per trainable tensor, same shape as the parameter
};

struct TorchImpl {
  // x is (N, d_in). Built from differentiable ATen ops so that autograd through it is the "naive same-precision
  // implementation" baseline of the numerics policy; the op below never differentiates through it.
  at::Tensor (*forward)(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) = nullptr;
  TorchGrads (*backward)(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy) =
      nullptr;
};

// Throws NotImplemented when the adapter has no torch backend.
const TorchImpl& torch_impl(const AdapterInfo& info);

// (d_in, d_out) read off tensors["weight"] (d_out, d_in); InputError when it is missing or not 2-D.
Dims dims_from_weight(const TorchTensors& t);

// Checks x (..., d_in), every tensor's logical shape, one dtype (float32/float64) and one device for all; names the
// argument and both shapes/dtypes on error. Returns the dims read off the base weight.
Dims validate_torch_call(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp);

// The autograd-aware op: y = adapter(x) with x of shape (..., d_in); gradients flow to x and to every trainable
// tensor in `t` that requires grad, computed by the adapter's analytic backward. `hp` must be resolved.
at::Tensor adapter_apply(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp);

}  // namespace gg
