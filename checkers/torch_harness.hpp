// The generic harness on the torch backend: the same seeded cases as the Eigen reference, run through LibTorch.
#pragma once
#include "checkers/adapter_harness.hpp"

namespace gg {

// The torch backend at float64 as a Differentiable (its analytic backward is what gets checked).
Differentiable torch_differentiable(const AdapterInfo& info, const AdapterCase<double>& c);

// Output and gradients of the torch backend at `dtype` (float64/float32). With naive=true the gradients come from
// autograd through the composite forward instead of the analytic backward: the "naive same-precision
// implementation" baseline of the numerics policy.
BackendRun run_torch(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& dtype,
                     const Mat<double>& dy, bool naive);

}  // namespace gg
