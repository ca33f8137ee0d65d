// The LibTorch backend, generated from the registry: finite differences on its analytic backward, planted bugs,
// agreement with the Eigen reference (float64 exact policy, float32 against a naive float32 baseline), the
// autograd-aware op (leading dims, non-contiguous views), and bad input.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "checkers/compare.hpp"
#include "checkers/tolerance.hpp"
#include "checkers/torch_harness.hpp"
#include "core/errors.hpp"
#include "core/torch_backend.hpp"
#include "planted.hpp"

namespace gg {
namespace {

using test::Plant;

class TorchGradcheck : public ::testing::TestWithParam<std::tuple<std::string, GradcheckMode>> {};

TEST_P(TorchGradcheck, AnalyticBackwardMatchesFiniteDifferences) {
  const auto& [name, mode] = GetParam();
  const AdapterInfo& info = find_adapter(name);
  for (const auto& shape : test::kShapes)
    for (const auto& [variant, hp] : test::flag_variants(info, shape.dims(info), shape.r)) {
      SCOPED_TRACE(std::string(shape.label) + " / " + variant);
      const auto c = make_case(info, shape.dims(info), hp, shape.n, 13);
      const GradcheckResult r = gradcheck(torch_differentiable(info, c), policy_options(info, mode, 13));
      for (const auto& t : r.tensors) EXPECT_TRUE(t.ok) << t.name << " worst " << t.worst;
    }
}

TEST_P(TorchGradcheck, PlantedBugsAreCaught) {
  const auto& [name, mode] = GetParam();
  const AdapterInfo& info = find_adapter(name);
  const Dims dims = check_dims(info, {7, 5});
  const auto c = make_case(info, dims, rank_hyper(info, dims, 3), 3, 17);
  for (Plant bug : {Plant::wrong_scale, Plant::transposed, Plant::dropped_term}) {
    SCOPED_TRACE(test::to_string(bug));
    const Differentiable healthy = torch_differentiable(info, c);
    const GradcheckResult r = gradcheck(test::plant(healthy, bug, c), policy_options(info, mode, 17));
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.tensors[test::planted_input(healthy, bug)].ok);
  }
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<std::string, GradcheckMode>>& p) {
  return std::get<0>(p.param) + "_" + to_string(std::get<1>(p.param));
}

INSTANTIATE_TEST_SUITE_P(Registry, TorchGradcheck,
                         ::testing::Combine(::testing::ValuesIn(adapter_names()),
                                            ::testing::Values(GradcheckMode::fast, GradcheckMode::full)),
                         param_name);

TorchTensors torch_case(const AdapterInfo& info, const AdapterCase<double>& c, at::ScalarType dtype) {
  TorchTensors t;
  for (const auto* spec : info.present_tensors(c.hp)) {
    const Mat<double>& m = c.tensors.at(spec->name);
    t[spec->name] = at::tensor(std::vector<double>(m.data(), m.data() + m.size()), at::kDouble)
                        .reshape(spec->shape(c.dims, c.hp))
                        .to(dtype);
  }
  return t;
}

class TorchOp : public ::testing::TestWithParam<std::string> {};

// The autograd op inside a "model": x with leading dims and a non-contiguous view; autograd's gradients (which run
// the analytic backward) must equal the analytic backward called directly.
TEST_P(TorchOp, RunsUnderAutogradWithLeadingDimsAndViews) {
  const AdapterInfo& info = find_adapter(GetParam());
  const auto c = make_case(info, {6, 4}, rank_hyper(info, {6, 4}, 2), 1, 23);
  TorchTensors t = torch_case(info, c, at::kDouble);
  for (const auto* spec : info.trainable(c.hp)) t[spec->name].requires_grad_(true);
  const at::Tensor x = at::randn({2, 6, 3}, at::kDouble).transpose(1, 2);  // (2, 3, 6), a non-contiguous view
  ASSERT_FALSE(x.is_contiguous());
  const at::Tensor xg = x.detach().requires_grad_(true);
  const at::Tensor y = adapter_apply(info, xg, t, c.hp);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{2, 3, 4}));
  const at::Tensor dy = at::randn({2, 3, 4}, at::kDouble);
  y.backward(dy);
  // Called directly with nothing saved, the backward recomputes its intermediates: both paths must agree.
  const TorchGrads direct =
      torch_impl(info).backward(x.reshape({-1, 6}), t, c.hp, dy.reshape({-1, 4}), {}, GradRequest{});
  EXPECT_TRUE(at::allclose(xg.grad().reshape({-1, 6}), direct.dx, 1e-12, 1e-12));
  for (const auto* spec : info.trainable(c.hp)) {
    ASSERT_TRUE(t[spec->name].grad().defined()) << spec->name;
    EXPECT_TRUE(at::allclose(t[spec->name].grad(), direct.dparams.at(spec->name), 1e-12, 1e-12)) << spec->name;
  }
}

// Autograd asks only for the gradients of inputs that require grad; the others are skipped, not computed and dropped.
TEST_P(TorchOp, ComputesOnlyRequestedGradients) {
  const AdapterInfo& info = find_adapter(GetParam());
  const auto c = make_case(info, {6, 4}, rank_hyper(info, {6, 4}, 2), 3, 29);
  TorchTensors t = torch_case(info, c, at::kDouble);
  const std::string first = info.trainable(c.hp)[0]->name;
  t[first].requires_grad_(true);
  const at::Tensor x = at::randn({3, 6}, at::kDouble);  // does not require grad
  const at::Tensor dy = at::randn({3, 4}, at::kDouble);
  adapter_apply(info, x, t, c.hp).backward(dy);
  const TorchGrads all = torch_impl(info).backward(x, t, c.hp, dy, {}, GradRequest{});
  ASSERT_TRUE(t[first].grad().defined());
  EXPECT_TRUE(at::allclose(t[first].grad(), all.dparams.at(first), 1e-12, 1e-12));
  GradRequest only;
  only.dx = false;
  only.all_params = false;
  only.params = {first};
  const TorchGrads some = torch_impl(info).backward(x, t, c.hp, dy, {}, only);
  EXPECT_FALSE(some.dx.defined());
  EXPECT_EQ(some.dparams.size(), 1u);
}

TEST_P(TorchOp, BadInputNamesTheArgument) {
  const AdapterInfo& info = find_adapter(GetParam());
  const auto c = make_case(info, {6, 4}, rank_hyper(info, {6, 4}, 2), 3, 0);
  auto expect_error = [&](const char* label, TorchTensors t, at::Tensor x, std::vector<std::string> contains) {
    SCOPED_TRACE(label);
    try {
      adapter_apply(info, x, t, c.hp);
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      for (const auto& s : contains) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
    }
  };
  const TorchTensors good = torch_case(info, c, at::kDouble);
  expect_error("x/W mismatch", good, at::ones({3, 5}, at::kDouble), {"'x'", "(..., 6)", "(4, 6)", "(3, 5)"});
  expect_error("integer x", good, at::ones({3, 6}, at::kLong), {"'x'", "float32 or float64", "Long"});
  TorchTensors mixed = good;
  const std::string p = info.trainable(c.hp)[0]->name;
  mixed[p] = mixed[p].to(at::kFloat);
  expect_error("dtype mix", mixed, at::ones({3, 6}, at::kDouble), {p, "dtype Double", "Float"});
  TorchTensors other_device = good;  // no GPU needed: the meta device is a different device all the same
  other_device[p] = at::empty(good.at(p).sizes(), at::TensorOptions().dtype(at::kDouble).device(at::kMeta));
  expect_error("device mix", other_device, at::ones({3, 6}, at::kDouble), {p, "device cpu", "meta"});
  TorchTensors missing = good;
  missing.erase(p);
  expect_error("missing tensor", missing, at::ones({3, 6}, at::kDouble), {p, "shape"});
  TorchTensors wrong_shape = good;
  wrong_shape[p] = at::ones({9, 9}, at::kDouble);
  expect_error("wrong shape", wrong_shape, at::ones({3, 6}, at::kDouble), {p, "(9, 9)"});
}

TEST_P(TorchOp, AgreesWithEigenReference) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {11, 7});
  for (const auto& [variant, hp] : test::flag_variants(info, dims, 3)) {
    SCOPED_TRACE(variant);
    // float64: each case on its own; low precision: the policy's budget over low_precision_cases pooled cases.
    std::vector<BackendRun> ref, t32, naive32, e32;
    for (uint64_t seed = 19; seed < 19 + tolerance::low_precision_cases; ++seed) {
      const auto c = make_case(info, dims, hp, 5, seed);
      const Mat<double> dy = make_upstream(c, seed);
      ref.push_back(run_eigen(info, c, "float64", dy));
      const BackendRun t64 = run_torch(info, c, "float64", dy, false);
      ASSERT_EQ(ref.back().size(), t64.size());
      for (const auto& [key, r] : ref.back()) {
        const auto s64 = compare_to_reference(key, r, t64.at(key), {}, 0, tolerance::f64_atol, tolerance::f64_rtol);
        EXPECT_TRUE(s64.ok) << key << " torch f64 max_abs " << s64.max_abs << " seed " << seed;
      }
      t32.push_back(run_torch(info, c, "float32", dy, false));
      naive32.push_back(run_torch(info, c, "float32", dy, true));
      e32.push_back(run_eigen(info, c, "float32", dy));
    }
    const BackendRun pref = pool_runs(ref), pt32 = pool_runs(t32), pnaive = pool_runs(naive32), pe32 = pool_runs(e32);
    for (const auto& [key, r] : pref)
      for (const auto* low : {&pt32, &pe32}) {
        const auto s = compare_to_reference(key, r, low->at(key), pnaive.at(key), tolerance::low_precision_k,
                                            tolerance::low_precision_atol("float32"), 0);
        EXPECT_TRUE(s.ok) << key << (low == &pt32 ? " torch" : " eigen") << " f32 budget " << s.budget_used;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, TorchOp, ::testing::ValuesIn(adapter_names()));

}  // namespace
}  // namespace gg
