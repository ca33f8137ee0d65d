// gradguard's own CUDA kernels against their float64 references (src/core/cuda/reference.hpp): every dtype, odd
// and aligned shapes, sentinels around every output (no write outside it, every element inside it written),
// bitwise determinism over 20 runs. Skips, with the reason printed, when no CUDA device is visible.
// Run under compute-sanitizer (memcheck, racecheck) by bench/gpu-check.sh.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cuda/kernels.hpp"
#include "core/cuda/reference.hpp"

namespace gg::cuda {
namespace {

namespace ref = reference;
using Vec = std::vector<double>;

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

constexpr size_t kPad = 256;            // sentinel bytes on each side of every device buffer
constexpr unsigned char kPoison = 0xA5;  // never a value a kernel writes here: bf16 0xA5A5 ≈ -2.9e-16, f32 ≈ -2.9e-16

bool skip_without_gpu() {
  const char* why = nullptr;
  if (device_count(&why) > 0) return false;
  std::printf("[  SKIPPED ] no CUDA device visible: %s\n", why ? why : "unknown");
  return true;
}

// Storage rounding of each dtype, on the host.
double round_to(DType t, double v) {
  switch (t) {
    case DType::f64: return v;
    case DType::f32: return static_cast<float>(v);
    case DType::f16: return __half2float(__float2half_rn(static_cast<float>(v)));
    case DType::bf16: return __bfloat162float(__float2bfloat16_rn(static_cast<float>(v)));
  }
  return v;
}

double unit_roundoff(DType t) {
  switch (t) {
    case DType::f64: return DBL_EPSILON / 2;
    case DType::f32: return FLT_EPSILON / 2;
    case DType::f16: return 1.0 / 2048;  // 2^-11
    case DType::bf16: return 1.0 / 256;  // 2^-8
  }
  return 0;
}

std::vector<unsigned char> encode(DType t, const Vec& v) {
  std::vector<unsigned char> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    unsigned char* p = out.data() + i * dtype_size(t);
    if (t == DType::f64) std::memcpy(p, &v[i], 8);
    else if (t == DType::f32) { const float f = static_cast<float>(v[i]); std::memcpy(p, &f, 4); }
    else if (t == DType::f16) { const __half h = __float2half_rn(static_cast<float>(v[i])); std::memcpy(p, &h, 2); }
    else { const __nv_bfloat16 b = __float2bfloat16_rn(static_cast<float>(v[i])); std::memcpy(p, &b, 2); }
  }
  return out;
}

double decode_one(DType t, const unsigned char* p) {
  if (t == DType::f64) { double d; std::memcpy(&d, p, 8); return d; }
  if (t == DType::f32) { float f; std::memcpy(&f, p, 4); return f; }
  if (t == DType::f16) { __half h; std::memcpy(&h, p, 2); return __half2float(h); }
  __nv_bfloat16 b; std::memcpy(&b, p, 2); return __bfloat162float(b);
}

// A device buffer with poisoned sentinels on both sides; the interior starts poisoned too (outputs) or holds data.
class Guarded {
 public:
  explicit Guarded(size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&base_, bytes + 2 * kPad), cudaSuccess);
    EXPECT_EQ(cudaMemset(base_, kPoison, bytes + 2 * kPad), cudaSuccess);
  }
  Guarded(const Guarded&) = delete;
  ~Guarded() { cudaFree(base_); }
  void* ptr() const { return static_cast<unsigned char*>(base_) + kPad; }
  void upload(const std::vector<unsigned char>& host) {
    EXPECT_EQ(cudaMemcpy(ptr(), host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<unsigned char> all() const {
    std::vector<unsigned char> h(bytes_ + 2 * kPad);
    EXPECT_EQ(cudaMemcpy(h.data(), base_, h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  std::vector<unsigned char> interior() const {
    const auto h = all();
    return {h.begin() + kPad, h.end() - kPad};
  }
  // Sentinels intact, and (elem_size > 0) no element of the interior still entirely poison (unwritten).
  void expect_guarded(const std::string& what, size_t elem_size) const {
    const auto h = all();
    for (size_t i = 0; i < kPad; ++i) {
      ASSERT_EQ(h[i], kPoison) << what << ": write before the buffer at byte -" << (kPad - i);
      ASSERT_EQ(h[kPad + bytes_ + i], kPoison) << what << ": write past the end at byte +" << i;
    }
    for (size_t e = 0; elem_size > 0 && e < bytes_ / elem_size; ++e) {
      bool poisoned = true;
      for (size_t b = 0; b < elem_size; ++b) poisoned = poisoned && h[kPad + e * elem_size + b] == kPoison;
      ASSERT_FALSE(poisoned) << what << ": element " << e << " was never written";
    }
  }
  size_t bytes() const { return bytes_; }

 private:
  void* base_ = nullptr;
  size_t bytes_;
};

Vec random_values(std::mt19937_64& rng, size_t n, DType t, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = round_to(t, u(rng));  // the kernel sees exactly these values
  return v;
}

// |got − want| ≤ u_out·|want| + γ·Σ|terms|, γ = (terms·u_acc)/(1 − terms·u_acc) for a sum of `terms` products,
// plus the storage rounding of the output: the textbook forward error bound (Higham, §3.1), not a tuned figure.
void expect_within_bound(const std::string& what, DType out_t, DType acc_t, const Vec& got, const Vec& want,
                         const Vec& abs_terms, int64_t terms) {
  const double u_acc = unit_roundoff(acc_t), u_out = unit_roundoff(out_t);
  const double gamma = terms * u_acc / (1 - terms * u_acc);
  for (size_t i = 0; i < want.size(); ++i) {
    const double bound = u_out * std::abs(want[i]) + gamma * abs_terms[i] * (1 + u_out) + 1e-300;
    ASSERT_LE(std::abs(got[i] - want[i]), bound) << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
  }
}

Vec decode_all(DType t, const std::vector<unsigned char>& bytes) {
  Vec out(bytes.size() / dtype_size(t));
  for (size_t i = 0; i < out.size(); ++i) out[i] = decode_one(t, bytes.data() + i * dtype_size(t));
  return out;
}

DType acc_of(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

constexpr DType kDtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};
// 20 bitwise-equal reruns (the determinism check); 2 under compute-sanitizer (GG_SANITIZER=1), whose
// instrumentation makes each run slow and whose purpose there is memory and race errors, not determinism.
const int kDeterminismRuns = std::getenv("GG_SANITIZER") ? 2 : 20;

struct Shape2 {
  int64_t n, width;
};

// gated_rank_grad and column_dot_scale share the contract (elementwise scale + column reduction of a product).
template <class Launch>
void check_scale_and_reduce(const char* kernel, Launch launch, size_t (*ws_bytes)(DType, int64_t, int64_t),
                            const std::vector<Shape2>& shapes) {
  std::mt19937_64 rng(7);
  for (DType t : kDtypes) {
    for (const auto [n, w] : shapes) {
      const std::string what = std::string(kernel) + " " + dtype_name(t) + " n=" + std::to_string(n) + " width=" + std::to_string(w);
      SCOPED_TRACE(what);
      const Vec a = random_values(rng, n * w, t), b = random_values(rng, n * w, t);
      const Vec c = random_values(rng, w, acc_of(t), 0.5, 2.0);
      const ref::Reduced want = ref::gated_rank_grad(a, b, c, n, w);
      Guarded da(a.size() * dtype_size(t)), db(b.size() * dtype_size(t)), dc(w * acc_size(t));
      Guarded scaled(a.size() * dtype_size(t)), sum(w * acc_size(t)), ws(ws_bytes(t, n, w));
      da.upload(encode(t, a));
      db.upload(encode(t, b));
      dc.upload(encode(acc_of(t), c));
      launch(t, da.ptr(), db.ptr(), dc.ptr(), scaled.ptr(), sum.ptr(), n, w, ws.ptr());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      scaled.expect_guarded("scaled output", dtype_size(t));
      sum.expect_guarded("reduction output", acc_size(t));
      ws.expect_guarded("workspace", 0);  // bounds only: partial sums may hold any bit pattern
      // elementwise: one product, rounded once to the storage type
      expect_within_bound("scaled", t, acc_of(t), decode_all(t, scaled.interior()), want.scaled, want.scaled, 1);
      expect_within_bound("sum", acc_of(t), acc_of(t), decode_all(acc_of(t), sum.interior()), want.sum, want.abs_sum, n);
      const auto first_scaled = scaled.interior(), first_sum = sum.interior();
      for (int run = 0; run < kDeterminismRuns; ++run) {
        launch(t, da.ptr(), db.ptr(), dc.ptr(), scaled.ptr(), sum.ptr(), n, w, ws.ptr());
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_EQ(scaled.interior(), first_scaled) << "run " << run << " differs bitwise (scaled)";
        ASSERT_EQ(sum.interior(), first_sum) << "run " << run << " differs bitwise (sum)";
      }
    }
  }
}

TEST(CudaKernels, GatedRankGrad) {
  if (skip_without_gpu()) GTEST_SKIP() << "no CUDA device visible";
  check_scale_and_reduce(
      "gated_rank_grad",
      [](DType t, const void* U, const void* S, const void* c, void* dS, void* cs, int64_t n, int64_t r, void* ws) {
        gated_rank_grad(t, U, S, c, dS, cs, n, r, ws, nullptr);
      },
      gated_rank_grad_workspace, {{0, 3}, {1, 1}, {5, 3}, {64, 16}, {1000, 33}, {4099, 8}, {20000, 64}});
}

TEST(CudaKernels, ColumnDotScale) {
  if (skip_without_gpu()) GTEST_SKIP() << "no CUDA device visible";
  check_scale_and_reduce(
      "column_dot_scale",
      [](DType t, const void* dY, const void* P, const void* g, void* dP, void* cs, int64_t n, int64_t d, void* ws) {
        column_dot_scale(t, dY, P, g, dP, cs, n, d, ws, nullptr);
      },
      column_dot_scale_workspace, {{0, 5}, {1, 1}, {3, 5}, {7, 256}, {100, 1000}, {513, 4104}, {2048, 1024}});
}

TEST(CudaKernels, RowNormsProject) {
  if (skip_without_gpu()) GTEST_SKIP() << "no CUDA device visible";
  std::mt19937_64 rng(11);
  struct S3 { int64_t d_out, d_in, r; };
  for (DType t : kDtypes) {
    for (const auto [d_out, d_in, r] : std::vector<S3>{{1, 1, 1}, {3, 5, 2}, {17, 300, 8}, {64, 1000, 16}, {33, 4099, 33}, {256, 2048, 64}}) {
      SCOPED_TRACE(std::string("row_norms_project ") + dtype_name(t) + " " + std::to_string(d_out) + "x" +
                   std::to_string(d_in) + " r=" + std::to_string(r));
      const Vec W = random_values(rng, d_out * d_in, t), A = random_values(rng, r * d_in, t);
      const ref::RowNorms want = ref::row_norms_project(W, A, d_out, d_in, r);
      Guarded dW(W.size() * dtype_size(t)), dA(A.size() * dtype_size(t));
      Guarded sumsq(d_out * acc_size(t)), WA(d_out * r * acc_size(t));
      dW.upload(encode(t, W));
      dA.upload(encode(t, A));
      row_norms_project(t, dW.ptr(), dA.ptr(), sumsq.ptr(), WA.ptr(), d_out, d_in, r, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      sumsq.expect_guarded("sumsq", acc_size(t));
      WA.expect_guarded("WA", acc_size(t));
      expect_within_bound("sumsq", acc_of(t), acc_of(t), decode_all(acc_of(t), sumsq.interior()), want.sumsq, want.sumsq, d_in);
      expect_within_bound("WA", acc_of(t), acc_of(t), decode_all(acc_of(t), WA.interior()), want.WA, want.WA_abs, d_in);
      const auto first = WA.interior();
      for (int run = 0; run < kDeterminismRuns; ++run) {
        row_norms_project(t, dW.ptr(), dA.ptr(), sumsq.ptr(), WA.ptr(), d_out, d_in, r, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_EQ(WA.interior(), first) << "run " << run << " differs bitwise";
      }
    }
  }
}

// The checks above must be able to fail: a planted off-by-one launch (one row short) leaves an element unwritten
// and a wrong reduction, and the sentinel/bound checks must say so.
TEST(CudaKernels, PlantedShortLaunchIsCaught) {
  if (skip_without_gpu()) GTEST_SKIP() << "no CUDA device visible";
  const int64_t n = 64, r = 4;
  std::mt19937_64 rng(3);
  const Vec U = random_values(rng, n * r, DType::f32), S = random_values(rng, n * r, DType::f32);
  const Vec c(r, 1.0);
  Guarded dU(n * r * 4), dS_in(n * r * 4), dc(r * 4), out(n * r * 4), sum(r * 4), ws(gated_rank_grad_workspace(DType::f32, n, r));
  dU.upload(encode(DType::f32, U));
  dS_in.upload(encode(DType::f32, S));
  dc.upload(encode(DType::f32, c));
  gated_rank_grad(DType::f32, dU.ptr(), dS_in.ptr(), dc.ptr(), out.ptr(), sum.ptr(), n - 1, r, ws.ptr(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto h = out.all();
  bool last_row_unwritten = true;
  for (size_t b = kPad + (n - 1) * r * 4; b < kPad + n * r * 4; ++b) last_row_unwritten = last_row_unwritten && h[b] == kPoison;
  EXPECT_TRUE(last_row_unwritten) << "the poison check would not see an unwritten row";
  const ref::Reduced want = ref::gated_rank_grad(U, S, c, n, r);
  const Vec got = decode_all(DType::f32, sum.interior());
  double worst = 0;
  for (int64_t j = 0; j < r; ++j) worst = std::max(worst, std::abs(got[j] - want.sum[j]) / (FLT_EPSILON * n * want.abs_sum[j]));
  EXPECT_GT(worst, 1.0) << "a missing row must exceed the forward error bound";
}

}  // namespace
}  // namespace gg::cuda
