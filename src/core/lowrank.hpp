// Pieces shared by every adapter of the LoRA family (lora, dora, weight_lora, my_lora, adalora): PEFT's
// hyper-parameters, scaling rule, rank bounds, the factor specs and the cost model. Declared once here, used by each
// entry.cpp. The rank lives under LoRA's `r` unless an adapter names another hyper-parameter (AdaLoRA's `init_r`).
#pragma once
#include <cmath>
#include <string>

#include "core/errors.hpp"
#include "core/linear.hpp"
#include "core/registry.hpp"

namespace gg::lowrank {

inline int64_t rank(const HyperParams& hp, const std::string& rank_param = "r") {
  return static_cast<int64_t>(hp.at(rank_param));
}

// PEFT LoraConfig defaults: r=8, lora_alpha=8, use_rslora=False.
inline std::vector<HyperParamSpec> hyper_params() {
  return {
      {"r", 8, HyperParamSpec::Kind::integer, "rank of the update"},
      {"lora_alpha", 8, HyperParamSpec::Kind::real, "alpha; scaling = alpha / r (alpha / sqrt(r) with use_rslora)"},
      {"use_rslora", 0, HyperParamSpec::Kind::flag, "rank-stabilised scaling alpha / sqrt(r)"},
  };
}

inline double scaling(const HyperParams& hp) {
  const double r = hp.at("r");
  return hp.at("use_rslora") != 0.0 ? hp.at("lora_alpha") / std::sqrt(r) : hp.at("lora_alpha") / r;
}

// Which upper bound an adapter's rank has. min_dims: a rank above min(d_in, d_out) adds parameters but no
// expressiveness (rank(ΔW) <= min(d_in, d_out)), so a typo (r=512 on a 64-wide layer) is caught instead of silently
// wasting memory. d_in: PEFT's own bound where r counts input-side pieces (MiSS's blocks, HRA's reflections). none:
// random frozen projections (VeRA) or Kronecker factors (LoKr), where PEFT allows any r.
enum class RankBound { min_dims, d_in, none };

inline void validate_rank(const Dims& dims, const HyperParams& hp, const std::string& rank_param,
                          RankBound bound = RankBound::min_dims) {
  const double r = hp.at(rank_param);
  if (r < 1) throw InputError(rank_param, "an integer >= 1", std::to_string(static_cast<int64_t>(r)));
  if (bound == RankBound::none) return;
  const int64_t max_rank = bound == RankBound::d_in ? dims.d_in : std::min(dims.d_in, dims.d_out);
  if (r > static_cast<double>(max_rank))
    throw InputError(rank_param,
                     std::string("at most ") + (bound == RankBound::d_in ? "d_in" : "min(d_in, d_out)") + " = " +
                         std::to_string(max_rank),
                     std::to_string(static_cast<int64_t>(r)));
}

inline void validate(const Dims& dims, const HyperParams& hp) { validate_rank(dims, hp, "r"); }

// A count of trainable entries of the weight grid (FourierFT's and WaveFT's n_frequency): PEFT's bounds, at least one
// and at most one per weight entry.
inline void validate_grid_entries(const Dims& dims, const HyperParams& hp, const std::string& count_param) {
  validate_rank(dims, hp, count_param, RankBound::none);
  const auto n = static_cast<int64_t>(hp.at(count_param));
  if (n > dims.d_in * dims.d_out)
    throw InputError(count_param, "at most d_in * d_out = " + std::to_string(dims.d_in * dims.d_out), std::to_string(n));
}

// Base GEMM plus the rank-r path (two thin GEMMs); extra_elementwise counts per-output-element work (gates, norms).
inline Cost forward_cost(int64_t n, const Dims& d, double r, double extra_elementwise = 0) {
  const double flops = 2.0 * n * d.d_in * d.d_out + 2.0 * n * r * (d.d_in + d.d_out) + extra_elementwise * n * d.d_out;
  const double bytes = 4.0 * (n * d.d_in + d.d_in * d.d_out + n * d.d_out + r * (d.d_in + d.d_out));
  return {flops, bytes};
}

// dX (base + adapter), dA, dB and the rank-r intermediate: twice the forward GEMM work, no dW for the frozen base.
inline Cost backward_cost(int64_t n, const Dims& d, double r, double extra_elementwise = 0) {
  const double flops = 2.0 * n * d.d_in * d.d_out + 4.0 * n * r * (d.d_in + d.d_out) + extra_elementwise * n * d.d_out;
  const double bytes = 4.0 * (2.0 * n * d.d_out + 2.0 * n * d.d_in + d.d_in * d.d_out + 2.0 * r * (d.d_in + d.d_out));
  return {flops, bytes};
}

// PEFT LoRA's factors: lora_A (r, d_in), kaiming at init; lora_B (d_out, r), zeros at init. AdaLoRA's factors have
// the same names and shapes but other keys and init (bare nn.Parameters, N(0, 0.02)), with the rank under init_r.
inline TensorSpec lora_A(std::string zero_grad_at_init, std::string peft_key = "lora_A.{adapter}.weight",
                         std::string init = "kaiming_uniform(a=sqrt(5))", std::string rank_param = "r") {
  return {"lora_A", TensorRole::trainable,
          [rank_param](const Dims& d, const HyperParams& hp) { return Shape{rank(hp, rank_param), d.d_in}; },
          std::move(peft_key), std::move(init), std::move(zero_grad_at_init), {}};
}

inline TensorSpec lora_B(std::string zero_grad_at_init = "", std::string peft_key = "lora_B.{adapter}.weight",
                         std::string init = "zeros", std::string rank_param = "r") {
  return {"lora_B", TensorRole::trainable,
          [rank_param](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, rank(hp, rank_param)}; },
          std::move(peft_key), std::move(init), std::move(zero_grad_at_init), {}};
}

// An entry with what the family shares filled in (hyper-parameters, base tensors, scaling, rank bounds, both
// backends at float64/float32, the rank-r cost model); the adapter adds its own tensors and overrides the rest.
inline AdapterInfo family_entry(std::string name, std::string peft_type, std::string summary, EigenImpl<double> e64,
                                EigenImpl<float> e32) {
  AdapterInfo a;
  a.name = std::move(name);
  a.peft_type = std::move(peft_type);
  a.summary = std::move(summary);
  a.hyper = hyper_params();
  a.rank_param = std::string(1, 'r');  // not = "r": GCC 12 -O3 -Wrestrict false positive (GCC bug 105329)
  a.tensors = linear::base_tensors();
  a.scaling = scaling;
  a.validate = validate;
  a.eigen64 = e64;
  a.eigen32 = e32;
  a.backends = {{"eigen", {"float64", "float32"}, ""}, {"torch", {"float64", "float32"}, ""}};
  a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return forward_cost(n, d, rank(hp)); };
  a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return backward_cost(n, d, rank(hp)); };
  return a;
}

}  // namespace gg::lowrank
