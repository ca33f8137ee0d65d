// CPU benchmarks over the registry (Google Benchmark): every adapter's torch backend at every preset and its Eigen
// float32 reference at the small one (the reference is written to be obviously right, not fast: plain loops where
// they are clearest, dense ΔW where that is the definition), forward and forward+backward, next to the base matmul
// at the same shape. The figures that matter are ratios to the base (bench/bench_peft.py adds PEFT's layers in one
// Python process); absolute times on a shared machine are noise. JSON: --benchmark_format=json.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include "checkers/adapter_harness.hpp"
#include "core/cases.hpp"
#include "core/torch_backend.hpp"

namespace gg {
namespace {

struct Preset {
  const char* label;
  int64_t n, d, r;
};
const Preset kPresets[] = {{"N512_d1024_r16", 512, 1024, 16}, {"N2048_d4096_r16", 2048, 4096, 16}, {"N512_d4096_r8", 512, 4096, 8}};

TorchTensors random_tensors(const AdapterInfo& info, const Dims& dims, const HyperParams& hp) {
  TorchTensors t;
  for (const auto* spec : info.present_tensors(hp)) t[spec->name] = at::randn(spec->shape(dims, hp), at::kFloat).mul_(0.02);
  return t;
}

void report(benchmark::State& state, const AdapterInfo* info, const Preset& p, bool backward) {
  const Dims dims{p.d, p.d};
  const HyperParams hp = info ? resolve_hyper(*info, dims, rank_hyper(*info, dims, p.r)) : HyperParams{};
  double flops = 2.0 * p.n * p.d * p.d * (backward ? 2 : 1);
  if (info) flops = info->forward_cost(p.n, dims, hp).flops + (backward ? info->backward_cost(p.n, dims, hp).flops : 0);
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_base(benchmark::State& state, Preset p, bool backward) {
  const at::Tensor w = at::randn({p.d, p.d}), b = at::randn({p.d});
  const at::Tensor x = at::randn({p.n, p.d}), dy = at::randn({p.n, p.d});
  for (auto _ : state) {
    at::Tensor y = at::addmm(b, x, w.t());
    if (backward) y = at::mm(dy, w);  // dX of the frozen base layer
    benchmark::DoNotOptimize(y.data_ptr());
  }
  report(state, nullptr, p, backward);
}

void BM_torch(benchmark::State& state, const AdapterInfo* info, Preset p, bool backward) {
  const Dims dims{p.d, p.d};
  const HyperParams hp = resolve_hyper(*info, dims, rank_hyper(*info, dims, p.r));
  const TorchTensors t = random_tensors(*info, dims, hp);
  const at::Tensor x = at::randn({p.n, p.d}), dy = at::randn({p.n, p.d});
  const TorchImpl& impl = torch_impl(*info);
  for (auto _ : state) {
    TorchTensors saved;
    at::Tensor y = impl.forward(x, t, hp, backward ? &saved : nullptr);
    benchmark::DoNotOptimize(y.data_ptr());
    if (backward) benchmark::DoNotOptimize(impl.backward(x, t, hp, dy, saved, GradRequest{}).dx.data_ptr());
  }
  report(state, info, p, backward);
}

void BM_eigen(benchmark::State& state, const AdapterInfo* info, Preset p, bool backward) {
  const Dims dims{p.d, p.d};
  try {
    const AdapterCase<float> c = cast_case<float>(make_case(*info, dims, rank_hyper(*info, dims, p.r), p.n, 0));
    const Mat<float> dy = Mat<float>::Random(p.n, p.d);
    for (auto _ : state) {
      const Mat<float> y = info->eigen32.forward(c.x, c.tensors, c.hp);
      benchmark::DoNotOptimize(y.data());
      if (backward) benchmark::DoNotOptimize(info->eigen32.backward(c.x, c.tensors, c.hp, dy).dx.data());
    }
    report(state, info, p, backward);
  } catch (const std::exception& e) {  // a shape the adapter refuses is reported in the output, not a crash
    state.SkipWithError(e.what());
  }
}

void register_all() {
  for (const auto& p : kPresets) {
    for (bool bwd : {false, true}) {
      const std::string mode = bwd ? "fwd_bwd" : "fwd";
      benchmark::RegisterBenchmark(("base/" + std::string(p.label) + "/" + mode).c_str(), BM_base, p, bwd)
          ->Unit(benchmark::kMillisecond)->MinWarmUpTime(0.05)->Repetitions(9)->ReportAggregatesOnly(true);
      for (const auto* info : registry())
        benchmark::RegisterBenchmark((info->name + "/torch/" + p.label + "/" + mode).c_str(), BM_torch, info, p, bwd)
            ->Unit(benchmark::kMillisecond)->MinWarmUpTime(0.05)->Repetitions(9)->ReportAggregatesOnly(true);
      if (&p != &kPresets[0]) continue;
      for (const auto* info : registry())
        benchmark::RegisterBenchmark((info->name + "/eigen/" + p.label + "/" + mode).c_str(), BM_eigen, info, p, bwd)
            ->Unit(benchmark::kMillisecond)->MinWarmUpTime(0.05)->Repetitions(9)->ReportAggregatesOnly(true);
    }
  }
}

}  // namespace
}  // namespace gg

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  gg::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
