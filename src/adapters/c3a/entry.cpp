// Registry entry for `c3a` (PEFT C3AConfig, C3ALinear around nn.Linear).
#include <cmath>
#include <numeric>

#include "adapters/c3a/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

void validate(const Dims& d, const HyperParams& hp) {
  const auto b = static_cast<int64_t>(hp.at("block_size"));
  if (b < 1) throw InputError("block_size", "an integer >= 1", std::to_string(b));
  if (d.d_in % b != 0 || d.d_out % b != 0)
    throw InputError("block_size", "a divisor of both d_in = " + std::to_string(d.d_in) + " and d_out = " +
                                       std::to_string(d.d_out), std::to_string(b));
}

// The largest block that tiles both widths, at most PEFT's default 256 (a divisor of their gcd): odd/prime shapes get
// B = 1, a dense ΔW.
void shape_hyper(const Dims& d, int64_t, HyperParams& hp) {
  const int64_t common = std::gcd(d.d_in, d.d_out);
  int64_t b = std::min<int64_t>(common, 256);
  while (common % b != 0) --b;
  hp["block_size"] = static_cast<double>(b);
}

// The torch backend's work: base GEMM(s) plus per-frequency complex products after a real FFT of each block,
// N·d_in·d_out/B·O(1) + FFTs (the backward does it twice: dX and dK).
Cost cost(int64_t n, const Dims& d, const HyperParams& hp, bool backward) {
  const double b = hp.at("block_size"), k = backward ? 2.0 : 1.0;
  Cost c = backward ? lowrank::backward_cost(n, d, 0) : lowrank::forward_cost(n, d, 0);
  c.flops += k * (8.0 * n * d.d_in * d.d_out / b * (b / 2 + 1) / b + 5.0 * n * (d.d_in + d.d_out) * std::log2(b + 1));
  c.bytes += k * 4.0 * d.d_in * d.d_out / b;
  return c;
}

}  // namespace

const AdapterInfo& c3a_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "c3a", "C3A", "Y = X (W + ΔW)ᵀ + b, ΔW blocks circulant: ΔW[iB+t, jB+s] = K[i, j, (s−t) mod B] / d_in",
        {c3a::forward<double>, c3a::backward<double>}, {c3a::forward<float>, c3a::backward<float>});
    a.hyper = {{"block_size", 256, HyperParamSpec::Kind::integer, "circulant block size B: must divide d_in and d_out"}};
    a.rank_param = "";
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    a.tensors.push_back({"c3a_kernel", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           const auto b = static_cast<int64_t>(hp.at("block_size"));
                           return Shape{d.d_out / b, d.d_in / b, b};
                         },
                         "c3a_kernel.{adapter}", "xavier_uniform (a = sqrt(6 / (d_in + d_out)))", "", {}});
    a.identity_at_init = false;
    a.peft_defects = {
        {"dx", [](const HyperParams& hp) { return hp.at("block_size") >= 3; }, {{"block_size", 2}},
         "PEFT 0.21.2's BlockCircularConvolution.backward (c3a/utils.py) returns Σ g·K[(s + t) mod B] for the input "
         "gradient where the forward's adjoint is Σ g·K[(s − t) mod B]: wrong for block_size >= 3, so every parameter "
         "upstream of a C3A layer trains on a wrong gradient (the kernel's own gradient is right)",
         "tests/python/test_peft_defects.py::test_known_peft_defect_c3a_input_gradient"},
    };
    a.tolerance_overrides = {
        {"peft", 1e-5, 1e-5,
         "PEFT computes C3A in float32 inside a float64 layer (x and the kernel cast to float32 before the FFTs): "
         "relative error ~1e-7 of every output and gradient; 1e-5 covers it at the checks' O(1) magnitudes while an "
         "indexing error stays O(1). At B >= 3 PEFT's dX is wrong outright, beyond any tolerance"},
    };
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, false); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, true); };
    a.notes = {
        "not the identity at PEFT's default init (xavier_uniform kernel); init_weights=True gives zeros",
        "PEFT 0.21.2 computes C3A in float32 inside a float64 layer, and its custom backward for the input uses "
        "K[(s + t) mod B] where the gradient needs K[(s − t) mod B]: wrong for B >= 3 (gradguard implements the "
        "gradient finite differences confirm; comparisons against PEFT's dX are expected to differ for B >= 3)",
        "generic checks use the largest block that tiles both widths (1 on odd/prime shapes)",
    };
    return a;
  }();
  return info;
}

}  // namespace gg
