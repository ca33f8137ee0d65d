// The generic harness on the LibTorch-based backends ("torch" on the CPU, "cuda" on the current CUDA device): the
// same seeded cases as the Eigen reference, run through the backend's forward and analytic backward.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

#include "checkers/adapter_harness.hpp"
#include "core/torch_backend.hpp"

namespace gg {

// The case's tensors (every present one, and the detached constants it carries) in the registry's shapes.
TorchTensors case_tensors(const AdapterInfo& info, const AdapterCase<double>& c, at::ScalarType dtype,
                          at::Device device = at::kCPU);

// The backend at float64 as a Differentiable (its analytic backward is what gets checked).
Differentiable torch_differentiable(const AdapterInfo& info, const AdapterCase<double>& c,
                                    const std::string& backend = "torch");

// Output and gradients of the backend at `dtype` (float64/float32; bfloat16/float16 too on cuda). With naive=true
// the gradients come from autograd through the torch backend's composite forward on the same device instead of the
// analytic backward: the "naive same-precision implementation" baseline of the numerics policy.
BackendRun run_torch(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& dtype,
                     const Mat<double>& dy, bool naive, const std::string& backend = "torch");

// The same two over an explicit implementation and device (the building blocks of the above; the CPU test of the
// cuda backend's host logic runs the cuda implementations on CPU tensors through these).
Differentiable impl_differentiable(const AdapterInfo& info, const AdapterCase<double>& c, const TorchImpl& impl,
                                   at::Device device);
BackendRun run_impl(const AdapterInfo& info, const AdapterCase<double>& c, at::ScalarType dtype, const Mat<double>& dy,
                    const TorchImpl& impl, bool naive, at::Device device);

}  // namespace gg
