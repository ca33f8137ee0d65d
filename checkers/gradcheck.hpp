// Central finite differences in float64 against an analytic vector-Jacobian product.
// Fast mode: random projections vᵀ J u per input tensor (2 forwards per tensor + 1 backward per projection).
// Full mode: the whole Jacobian, column by column by finite differences and row by row by the backward.
// Both exist because fast mode alone has missed real bugs (DESIGN.md §4). No torch here.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace gg {

struct FlatTensor {
  std::string name;
  Shape shape;
  std::vector<double> values;  // row-major
};

// A function of several tensors with a flat output, plus its vector-Jacobian product (one gradient per input).
struct Differentiable {
  std::vector<FlatTensor> inputs;  // the point at which derivatives are checked
  std::function<std::vector<double>(const std::vector<FlatTensor>&)> forward;
  std::function<std::vector<std::vector<double>>(const std::vector<FlatTensor>&, const std::vector<double>& dy)> vjp;
};

enum class GradcheckMode { fast, full };

// Defaults are the project's numerics policy (DESIGN.md §4); see checkers/tolerance.hpp.
struct GradcheckOptions {
  GradcheckMode mode = GradcheckMode::fast;
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;
  int projections = 2;               // fast mode: random (u, v) pairs per tensor
  bool four_point = false;           // 4-point stencil instead of the 2-point central difference
  int64_t max_full_entries = 2000000;  // full mode refuses Jacobians larger than this (inputs × outputs)
};

struct TensorGradcheck {
  std::string name;
  Shape shape;
  double max_abs_err = 0;
  double max_rel_err = 0;
  double budget_used = 0;   // max over checks of |err| / (atol + rtol·|numeric|); ok means <= 1
  std::string worst;        // where the worst error is: "d out[i] / d name[j, k]" or "projection p"
  double analytic_at_worst = 0;
  double numeric_at_worst = 0;
  int64_t checks = 0;
  bool ok = true;
};

struct GradcheckResult {
  bool ok = true;
  GradcheckMode mode = GradcheckMode::fast;
  GradcheckOptions options;
  int64_t forward_evals = 0;
  int64_t backward_evals = 0;
  std::vector<TensorGradcheck> tensors;
};

// Throws InputError for non-finite inputs or outputs, mismatched gradient shapes, or a too-large full Jacobian.
GradcheckResult gradcheck(const Differentiable& f, const GradcheckOptions& options);

std::string to_string(GradcheckMode mode);
GradcheckMode parse_gradcheck_mode(const std::string& mode);  // throws InputError naming 'mode'

}  // namespace gg
