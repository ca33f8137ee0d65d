// Every adapter × shape × hyper-parameter variant × mode: the Eigen float64 analytic backward agrees with finite
// differences; and every planted bug is caught in both modes. Generated from the registry.
#include <gtest/gtest.h>

#include <cmath>

#include "checkers/adapter_harness.hpp"
#include "planted.hpp"

namespace gg {
namespace {

using test::Plant;

class EigenGradcheck : public ::testing::TestWithParam<std::tuple<std::string, GradcheckMode>> {};

TEST_P(EigenGradcheck, AnalyticBackwardMatchesFiniteDifferences) {
  const auto& [name, mode] = GetParam();
  const AdapterInfo& info = find_adapter(name);
  for (const auto& shape : test::kShapes) {
    for (const auto& [variant, hp] : test::flag_variants(info, shape.dims(info), shape.r)) {
      SCOPED_TRACE(std::string(shape.label) + " / " + variant);
      const auto c = make_case(info, shape.dims(info), hp, shape.n, 7);
      const GradcheckResult r = gradcheck(eigen_differentiable(info, c), policy_options(info, mode, 7));
      for (const auto& t : r.tensors) EXPECT_TRUE(t.ok) << t.name << " worst " << t.worst << " budget " << t.budget_used;
      EXPECT_EQ(r.tensors.size(), 1 + info.trainable(c.hp).size());  // x and every trainable tensor were checked
      EXPECT_TRUE(r.ok);
    }
  }
}

class PlantedBug : public ::testing::TestWithParam<std::tuple<std::string, GradcheckMode, Plant>> {};

TEST_P(PlantedBug, IsCaught) {
  const auto& [name, mode, bug] = GetParam();
  const AdapterInfo& info = find_adapter(name);
  for (const auto& shape : test::kShapes) {
    SCOPED_TRACE(shape.label);
    const auto c = make_case(info, shape.dims(info), rank_hyper(info, shape.dims(info), shape.r), shape.n, 11);
    const Differentiable healthy = eigen_differentiable(info, c);
    const size_t k = test::planted_input(healthy, bug);
    if (bug == Plant::transposed) ASSERT_TRUE(test::transposable(healthy.inputs[k])) << healthy.inputs[k].name;
    const GradcheckResult r = gradcheck(test::plant(healthy, bug, c), policy_options(info, mode, 11));
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.tensors[k].ok) << "the planted tensor " << r.tensors[k].name << " passed";
    for (size_t j = 0; j < r.tensors.size(); ++j)
      if (j != k) EXPECT_TRUE(r.tensors[j].ok) << r.tensors[j].name << " failed but was not planted";
  }
}

// DoRA's real-world trap: the exact-gradient forward checked against the detached-norm backward drops the norm's
// term; gradcheck must see the difference on A and B (and only there).
TEST(DoraSemantics, DetachedBackwardIsNotTheExactGradient) {
  AdapterInfo mixed = find_adapter("dora");
  mixed.eigen64.backward = [](const Mat<double>& x, const TensorMap<double>& t, const HyperParams& hp,
                              const Mat<double>& dy) {
    HyperParams detached = hp;
    detached["exact_gradient"] = 0;
    return find_adapter("dora").eigen64.backward(x, t, detached, dy);
  };
  for (auto mode : {GradcheckMode::fast, GradcheckMode::full}) {
    const auto c = make_case(mixed, {6, 5}, {{"r", 2}, {"exact_gradient", 1}}, 3, 3);
    const GradcheckResult r = gradcheck(eigen_differentiable(mixed, c), policy_options(mixed, mode, 3));
    EXPECT_FALSE(r.ok);
    for (const auto& t : r.tensors) {
      const bool depends_on_norm = t.name == "lora_A" || t.name == "lora_B";
      EXPECT_EQ(t.ok, !depends_on_norm) << t.name;
    }
  }
}

TEST(Gradcheck, ReportsBudgetWorstIndexAndEvaluations) {
  const AdapterInfo& info = find_adapter("lora");
  const auto c = make_case(info, {3, 2}, {{"r", 1}}, 2, 0);
  const GradcheckResult r = gradcheck(eigen_differentiable(info, c), policy_options(info, GradcheckMode::full, 0));
  ASSERT_TRUE(r.ok);
  // full mode: one backward per output element, two forwards per input element (+1 for the base point)
  EXPECT_EQ(r.backward_evals, 2 * 2);
  EXPECT_EQ(r.forward_evals, 1 + 2 * (2 * 3 + 1 * 3 + 2 * 1));
  for (const auto& t : r.tensors) {
    EXPECT_LE(t.budget_used, 1.0);
    EXPECT_FALSE(t.worst.empty());
    EXPECT_EQ(t.checks, 4 * numel(t.shape));  // every (output, input element) pair
  }
}

// A backward that returns NaN for one tensor fails that tensor with NaN errors and an unbounded budget, never a
// reassuring 0 (std::max drops NaN); the other tensors still pass.
TEST(Gradcheck, NanGradientFailsWithNanErrors) {
  const AdapterInfo& info = find_adapter("lora");
  const auto c = make_case(info, {4, 3}, {{"r", 2}}, 3, 1);
  Differentiable f = eigen_differentiable(info, c);
  const auto vjp = f.vjp;
  f.vjp = [vjp](const std::vector<FlatTensor>& in, const std::vector<double>& dy) {
    auto g = vjp(in, dy);
    g[1][0] = std::nan("");  // lora_A's first entry
    return g;
  };
  for (auto mode : {GradcheckMode::fast, GradcheckMode::full}) {
    const GradcheckResult r = gradcheck(f, policy_options(info, mode, 1));
    EXPECT_FALSE(r.ok);
    ASSERT_EQ(r.tensors[1].name, "lora_A");
    EXPECT_FALSE(r.tensors[1].ok);
    EXPECT_TRUE(std::isnan(r.tensors[1].max_abs_err));
    EXPECT_TRUE(std::isnan(r.tensors[1].max_rel_err));
    EXPECT_TRUE(std::isinf(r.tensors[1].budget_used));
    for (size_t j = 0; j < r.tensors.size(); ++j)
      if (j != 1) EXPECT_TRUE(r.tensors[j].ok && std::isfinite(r.tensors[j].max_abs_err)) << r.tensors[j].name;
  }
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<std::string, GradcheckMode>>& p) {
  return std::get<0>(p.param) + "_" + to_string(std::get<1>(p.param));
}

std::string plant_name(const ::testing::TestParamInfo<std::tuple<std::string, GradcheckMode, Plant>>& p) {
  return std::get<0>(p.param) + "_" + to_string(std::get<1>(p.param)) + "_" + test::to_string(std::get<2>(p.param));
}

INSTANTIATE_TEST_SUITE_P(Registry, EigenGradcheck,
                         ::testing::Combine(::testing::ValuesIn(adapter_names()),
                                            ::testing::Values(GradcheckMode::fast, GradcheckMode::full)),
                         param_name);

INSTANTIATE_TEST_SUITE_P(Registry, PlantedBug,
                         ::testing::Combine(::testing::ValuesIn(adapter_names()),
                                            ::testing::Values(GradcheckMode::fast, GradcheckMode::full),
                                            ::testing::Values(Plant::wrong_scale, Plant::transposed,
                                                              Plant::dropped_term)),
                         plant_name);

}  // namespace
}  // namespace gg
