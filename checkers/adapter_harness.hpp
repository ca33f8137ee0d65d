// The generic harness: turns any registry entry + seeded case into a Differentiable for gradcheck (x and every
// trainable tensor are inputs; frozen tensors are held fixed). Knows adapters only through AdapterInfo.
#pragma once
#include "checkers/gradcheck.hpp"
#include <map>

#include "core/cases.hpp"

namespace gg {

// Inputs of the Differentiable, in order: x, then the trainable tensors in registry order.
std::vector<FlatTensor> case_inputs(const AdapterInfo& info, const AdapterCase<double>& c);

// The float64 Eigen reference as a Differentiable (its analytic backward is what gets checked).
Differentiable eigen_differentiable(const AdapterInfo& info, const AdapterCase<double>& c);

// Writes the flat inputs back into a case (x and the trainable tensors).
void assign_inputs(const AdapterInfo& info, const std::vector<FlatTensor>& inputs, AdapterCase<double>& c);

GradcheckOptions policy_options(const AdapterInfo& info, GradcheckMode mode, uint64_t seed);

}  // namespace gg

namespace gg {

// Output and gradients of one backend on one case, flattened to float64: keys "y", "dx", "d <tensor>".
using BackendRun = std::map<std::string, std::vector<double>>;

// The runs of several seeded cases pooled per key (values appended in order), for budgets over many cases.
BackendRun pool_runs(const std::vector<BackendRun>& runs);

// The Eigen reference at float64 or float32 (the case is cast), with upstream gradient dy (N, d_out).
BackendRun run_eigen(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& dtype,
                     const Mat<double>& dy);

// A seeded upstream gradient for a case.
Mat<double> make_upstream(const AdapterCase<double>& c, uint64_t seed);

}  // namespace gg
