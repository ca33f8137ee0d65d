// A downstream project using the installed C++ package: find_package(gradguard) and gradguard::gg_core.
#include <iostream>
#include "checkers/adapter_harness.hpp"
int main() {
  const auto& info = gg::find_adapter("my_lora");
  auto c = gg::make_case(info, {6, 4}, {{"r", 2}}, 3, 0);
  auto r = gg::gradcheck(gg::eigen_differentiable(info, c), gg::policy_options(info, gg::GradcheckMode::full, 0));
  std::cout << (r.ok ? "ok" : "FAIL") << "\n";
  return r.ok ? 0 : 1;
}
