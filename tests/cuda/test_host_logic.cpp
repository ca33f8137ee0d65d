// The cuda backend's host code on the CPU: every adapter with kernels runs its cuda implementation on CPU tensors,
// with the kernels replaced by their float64 references (host_shim.cpp). Finite differences in float64 (fast and
// full) and agreement with the Eigen reference check the maths that composes the kernels with the GEMMs — layouts,
// gates, DoRA's rank-r weight norm and exact gradient — on every CI run; the kernels themselves are checked on a GPU
// (test_kernels.cpp, tests/python/test_cuda.py).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "checkers/compare.hpp"
#include "checkers/tolerance.hpp"
#include "checkers/torch_harness.hpp"
#include "core/cuda_backend.hpp"
#include "core/torch_backend.hpp"

namespace gg {

namespace {

std::vector<std::pair<std::string, HyperParams>> variants(const std::string& name) {
  std::vector<std::pair<std::string, HyperParams>> v = {{"default", {{"r", 3}}}, {"rslora", {{"r", 3}, {"use_rslora", 1}}}};
  if (name == "lora") v.push_back({"lora_bias", {{"r", 3}, {"lora_bias", 1}}});
  if (name == "dora") v.push_back({"exact_gradient", {{"r", 3}, {"exact_gradient", 1}}});
  return v;
}

class CudaHostLogic : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaHostLogic, FiniteDifferencesFastAndFull) {
  const AdapterInfo& info = find_adapter(GetParam());
  for (const auto& [variant, given] : variants(info.name)) {
    SCOPED_TRACE(variant);
    const HyperParams hp = resolve_hyper(info, {9, 6}, given);
    const auto c = make_case(info, {9, 6}, hp, 5, 23);
    for (GradcheckMode mode : {GradcheckMode::fast, GradcheckMode::full}) {
      const auto r = gradcheck(impl_differentiable(info, c, cuda_impl(info), at::kCPU), policy_options(info, mode, 23));
      for (const auto& t : r.tensors) EXPECT_TRUE(t.ok) << to_string(mode) << " " << t.name << " worst " << t.worst;
    }
  }
}

TEST_P(CudaHostLogic, AgreesWithEigenReference) {
  const AdapterInfo& info = find_adapter(GetParam());
  for (const auto& [variant, given] : variants(info.name)) {
    SCOPED_TRACE(variant);
    const HyperParams hp = resolve_hyper(info, {11, 7}, given);
    std::vector<BackendRun> ref, got32, naive32;
    for (uint64_t seed = 29; seed < 29 + tolerance::low_precision_cases; ++seed) {
      const auto c = make_case(info, {11, 7}, hp, 6, seed);
      const Mat<double> dy = make_upstream(c, seed);
      ref.push_back(run_eigen(info, c, "float64", dy));
      const BackendRun got = run_impl(info, c, at::kDouble, dy, cuda_impl(info), false, at::kCPU);
      ASSERT_EQ(ref.back().size(), got.size());
      for (const auto& [key, r] : ref.back()) {
        const auto s = compare_to_reference(key, r, got.at(key), {}, 0, tolerance::f64_atol, tolerance::f64_rtol);
        EXPECT_TRUE(s.ok) << key << " f64 max_abs " << s.max_abs;
      }
      got32.push_back(run_impl(info, c, at::kFloat, dy, cuda_impl(info), false, at::kCPU));
      naive32.push_back(run_impl(info, c, at::kFloat, dy, torch_impl(info), true, at::kCPU));
    }
    const BackendRun pref = pool_runs(ref), pgot = pool_runs(got32), pnaive = pool_runs(naive32);
    for (const auto& [key, r] : pref) {
      const auto s32 = compare_to_reference(key, r, pgot.at(key), pnaive.at(key), tolerance::low_precision_k,
                                            tolerance::low_precision_atol("float32"), 0);
      EXPECT_TRUE(s32.ok) << key << " f32 budget " << s32.budget_used;
    }
  }
}

// Every adapter the cuda table lists (through the real table in src/core/cuda_backend.cpp).
std::vector<std::string> with_kernels() {
  std::vector<std::string> names;
  for (const auto* info : registry())
    if (has_cuda_impl(*info)) names.push_back(info->name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(WithKernels, CudaHostLogic, ::testing::ValuesIn(with_kernels()));

TEST(CudaHostLogicTable, ListsTheGatedLowRankAdapters) {
  EXPECT_EQ(with_kernels(), (std::vector<std::string>{"lora", "dora", "weight_lora", "my_lora", "kasa"}));
}

}  // namespace
}  // namespace gg
