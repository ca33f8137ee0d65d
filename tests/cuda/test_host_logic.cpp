// The cuda backend's host code on the CPU: every adapter with kernels runs its cuda implementation on CPU tensors,
// with the kernels replaced by their float64 references (host_shim.cpp). Finite differences in float64 (fast and
// full) and agreement with the Eigen reference check the maths that composes the kernels with the GEMMs — layouts,
// gates, DoRA's rank-r weight norm and exact gradient — on every CI run; the kernels themselves are checked on a GPU
// (test_kernels.cpp, tests/python/test_cuda.py).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <set>

#include "checkers/compare.hpp"
#include "checkers/tolerance.hpp"
#include "checkers/torch_harness.hpp"
#include "core/cuda_backend.hpp"
#include "core/torch_backend.hpp"
#include "planted.hpp"

namespace gg {

namespace {

// Every flag of the adapter flipped in turn (use_rslora, lora_bias, exact_gradient, is_feedforward, ...), rank 3;
// for an adapter with conv_kernel (IA3), also a convolution lowered to this Linear (kernel volume = the smallest
// divisor > 1 of d_in) with every flag flipped, so a per-channel vector's K-fold repetition is exercised.
std::vector<std::pair<std::string, HyperParams>> variants(const AdapterInfo& info, const Dims& dims) {
  std::vector<std::pair<std::string, HyperParams>> v;
  for (auto& [label, hp] : test::flag_variants(info, dims, 3)) v.push_back({label, resolve_hyper(info, dims, hp)});
  const bool conv = std::any_of(info.hyper.begin(), info.hyper.end(), [](const auto& h) { return h.name == "conv_kernel"; });
  int64_t k = 2;
  while (k < dims.d_in && dims.d_in % k != 0) ++k;
  if (conv && k < dims.d_in) {
    HyperParams hp = rank_hyper(info, dims, 3);
    hp["conv_kernel"] = static_cast<double>(k);
    for (const auto& h : info.hyper)
      if (h.kind == HyperParamSpec::Kind::flag) hp[h.name] = h.default_value != 0.0 ? 0.0 : 1.0;
    v.push_back({"conv_kernel " + std::to_string(k), resolve_hyper(info, dims, hp)});
  }
  return v;
}

class CudaHostLogic : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaHostLogic, FiniteDifferencesFastAndFull) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {9, 6});
  for (const auto& [variant, hp] : variants(info, dims)) {
    SCOPED_TRACE(variant);
    const auto c = make_case(info, dims, hp, 5, 23);
    for (GradcheckMode mode : {GradcheckMode::fast, GradcheckMode::full}) {
      const auto r = gradcheck(impl_differentiable(info, c, cuda_impl(info), at::kCPU), policy_options(info, mode, 23));
      for (const auto& t : r.tensors) EXPECT_TRUE(t.ok) << to_string(mode) << " " << t.name << " worst " << t.worst;
    }
  }
}

TEST_P(CudaHostLogic, AgreesWithEigenReference) {
  const AdapterInfo& info = find_adapter(GetParam());
  for (const Dims requested : {Dims{11, 7}, Dims{12, 8}}) {  // odd, and one with divisors (conv_kernel)
    const Dims dims = check_dims(info, requested);
    for (const auto& [variant, hp] : variants(info, dims)) {
      SCOPED_TRACE(variant + " at " + std::to_string(dims.d_in) + "x" + std::to_string(dims.d_out));
      std::vector<BackendRun> ref, got32, naive32;
      for (uint64_t seed = 29; seed < 29 + tolerance::low_precision_cases; ++seed) {
        const auto c = make_case(info, dims, hp, 6, seed);
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
}

// Autograd asks only for the gradients of inputs that require grad: each single request (every trainable tensor
// alone, then dx alone) returns exactly that gradient, equal to the one of the full request, and the full request
// returns every trainable tensor's and nothing for a frozen one (VeRA's shared projections, the base weight).
TEST_P(CudaHostLogic, ReturnsExactlyTheRequestedGradients) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {9, 6});
  const TorchImpl& impl = cuda_impl(info);
  for (const auto& [variant, hp] : variants(info, dims)) {
    SCOPED_TRACE(variant);
    const auto c = make_case(info, dims, hp, 5, 31);
    const TorchTensors t = case_tensors(info, c, at::kDouble);
    const at::Tensor x = at::randn({c.x.rows(), dims.d_in}, at::kDouble);
    const at::Tensor dy = at::randn({c.x.rows(), dims.d_out}, at::kDouble);
    TorchTensors saved;
    impl.forward(x, t, hp, &saved);
    const TorchGrads all = impl.backward(x, t, hp, dy, saved, GradRequest{});
    std::set<std::string> trainable, got;
    for (const auto* spec : info.trainable(hp)) trainable.insert(spec->name);
    for (const auto& [name, g] : all.dparams) got.insert(name);
    EXPECT_EQ(got, trainable);
    for (const std::string& name : trainable) {
      SCOPED_TRACE(name);
      const TorchGrads one = impl.backward(x, t, hp, dy, saved, GradRequest{false, {name}, false});
      EXPECT_FALSE(one.dx.defined());
      ASSERT_EQ(one.dparams.size(), 1u);
      EXPECT_TRUE(at::allclose(one.dparams.at(name), all.dparams.at(name), 1e-12, 1e-12));
    }
    const TorchGrads dx_only = impl.backward(x, t, hp, dy, saved, GradRequest{true, {}, false});
    EXPECT_TRUE(dx_only.dparams.empty());
    EXPECT_TRUE(at::allclose(dx_only.dx, all.dx, 1e-12, 1e-12));
  }
}

// An empty batch (N = 0) is a valid input: an empty output and dx, and every parameter's gradient exactly 0.
TEST_P(CudaHostLogic, EmptyBatchGivesZeroGradients) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {9, 6});
  const HyperParams hp = resolve_hyper(info, dims, rank_hyper(info, dims, 3));
  const auto c = make_case(info, dims, hp, 5, 37);
  const TorchTensors t = case_tensors(info, c, at::kDouble);
  const at::Tensor x = at::zeros({0, dims.d_in}, at::kDouble), dy = at::zeros({0, dims.d_out}, at::kDouble);
  TorchTensors saved;
  const TorchImpl& impl = cuda_impl(info);
  EXPECT_EQ(impl.forward(x, t, hp, &saved).sizes(), (std::vector<int64_t>{0, dims.d_out}));
  const TorchGrads g = impl.backward(x, t, hp, dy, saved, GradRequest{});
  EXPECT_EQ(g.dx.sizes(), (std::vector<int64_t>{0, dims.d_in}));
  for (const auto& [name, d] : g.dparams) {
    EXPECT_EQ(d.sizes(), t.at(name).sizes()) << name;
    EXPECT_EQ(d.abs().max().item<double>(), 0.0) << name;
  }
}

// Every adapter the cuda table lists (through the real table in src/core/cuda_backend.cpp).
std::vector<std::string> with_kernels() {
  std::vector<std::string> names;
  for (const auto* info : registry())
    if (has_cuda_impl(*info)) names.push_back(info->name);
  return names;
}

// The finite-difference check above, shown to fail on the cuda implementation's own backward with a planted bug (a
// wrong scale, a transposed gradient, dX missing the adapter's term), in every flag variant.
TEST_P(CudaHostLogic, PlantedBugsAreCaught) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {7, 5});
  for (const auto& [variant, hp] : variants(info, dims)) {
    const auto c = make_case(info, dims, hp, 3, 17);
    const Differentiable healthy = impl_differentiable(info, c, cuda_impl(info), at::kCPU);
    for (test::Plant bug : {test::Plant::wrong_scale, test::Plant::transposed, test::Plant::dropped_term}) {
      SCOPED_TRACE(variant + " " + test::to_string(bug));
      const GradcheckResult r = gradcheck(test::plant(healthy, bug, c), policy_options(info, GradcheckMode::full, 17));
      EXPECT_FALSE(r.ok);
      EXPECT_FALSE(r.tensors[test::planted_input(healthy, bug)].ok);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WithKernels, CudaHostLogic, ::testing::ValuesIn(with_kernels()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(CudaHostLogicTable, ListsEveryAdapterWithKernels) {
  EXPECT_EQ(with_kernels(), (std::vector<std::string>{"lora", "dora", "weight_lora", "my_lora", "adalora", "ia3", "loha",
                                                      "vera", "kasa"}));
}

}  // namespace
}  // namespace gg
