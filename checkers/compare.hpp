// Cross-implementation numerics: one tensor of a backend against the float64 reference, with the policy of
// DESIGN.md §4. No torch here; backends hand over flat float64 copies of their outputs and gradients.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gg {

struct CompareStats {
  std::string tensor;         // "y", "dx", "d lora_A", ...
  double max_abs = 0;
  double max_rel = 0;
  double nmse = 0;            // Σ err² / Σ ref²
  int64_t worst_index = -1;   // flat index of the largest budget use
  double budget_used = 0;     // max |err| / allowed; ok means <= 1
  bool ok = true;
};

// allowed_i = atol + rtol·|ref_i|                       when naive is empty (two float64 implementations)
// allowed   = k·max_i |naive_i − ref_i| + atol          otherwise (a low-precision backend vs a naive one)
CompareStats compare_to_reference(const std::string& tensor, const std::vector<double>& ref,
                                  const std::vector<double>& test, const std::vector<double>& naive, double k,
                                  double atol, double rtol);

}  // namespace gg
