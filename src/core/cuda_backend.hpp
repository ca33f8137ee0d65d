// The `cuda` backend: per-adapter forward/backward on CUDA tensors built from cuBLAS GEMMs (through ATen) and
// gradguard's own fused kernels (src/core/cuda, src/adapters/<name>/kernels.cu). Same interface as the torch backend
// (TorchImpl), so the generic autograd op, the harness and the checkers run it unchanged. Float64, float32, bfloat16
// and float16; reductions are deterministic.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

#include "core/torch_backend.hpp"

namespace gg {

// Empty when the kernels were compiled in (GG_CUDA) and a CUDA device is visible; otherwise the reason, for skip
// messages ("built without CUDA: nvcc was not found at configure time", "no CUDA device visible: ...").
std::string cuda_unavailable_reason();

// Throws NotImplemented when the adapter has no cuda backend (or the build has none at all).
const TorchImpl& cuda_impl(const AdapterInfo& info);

// Whether the adapter has a cuda implementation in this build.
bool has_cuda_impl(const AdapterInfo& info);

}  // namespace gg
