#include "checkers/compare.hpp"

#include <cmath>

#include "core/errors.hpp"

namespace gg {

CompareStats compare_to_reference(const std::string& tensor, const std::vector<double>& ref,
                                  const std::vector<double>& test, const std::vector<double>& naive, double k,
                                  double atol, double rtol) {
  if (test.size() != ref.size())
    throw InputError("test '" + tensor + "'", std::to_string(ref.size()) + " values (as the reference)", std::to_string(test.size()));
  if (!naive.empty() && naive.size() != ref.size())
    throw InputError("naive '" + tensor + "'", std::to_string(ref.size()) + " values (as the reference)", std::to_string(naive.size()));
  CompareStats s;
  s.tensor = tensor;
  // Low precision: the budget is tensor-wide, k × the naive implementation's max error (flash-attention's rule);
  // an element-wise budget would fail wherever the naive error happens to be ~0 by luck.
  double naive_max = 0;
  for (size_t i = 0; i < naive.size(); ++i) naive_max = std::max(naive_max, std::abs(naive[i] - ref[i]));
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::abs(test[i] - ref[i]);
    const double allowed = naive.empty() ? atol + rtol * std::abs(ref[i]) : k * naive_max + atol;
    const double used = std::isfinite(err) ? err / allowed : INFINITY;
    if (s.worst_index < 0 || used > s.budget_used) {
      s.budget_used = used;
      s.worst_index = static_cast<int64_t>(i);
    }
    s.max_abs = std::max(s.max_abs, std::isfinite(err) ? err : INFINITY);
    if (ref[i] != 0) s.max_rel = std::max(s.max_rel, err / std::abs(ref[i]));
    err2 += err * err;
    ref2 += ref[i] * ref[i];
    if (!(err <= allowed)) s.ok = false;
  }
  s.nmse = ref2 > 0 ? err2 / ref2 : err2;
  return s;
}

}  // namespace gg
