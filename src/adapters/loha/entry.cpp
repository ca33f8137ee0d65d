// Registry entry for `loha` (PEFT LoHaConfig: loha Linear, and Conv1d/Conv2d lowered to a Linear with conv_kernel,
// in the default or the Tucker (use_effective_conv2d) form).
#include "adapters/loha/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

// The default form: w*_a (d_out, r) and w*_b (r, d_in). The Tucker form (use_effective_conv2d, core/tucker.hpp):
// mode factors w*_a (r, d_out) and w*_b (r, in_channels) around a core hada_t* (r, r·conv_kernel), PEFT's
// (r, r, *kernel). All bare nn.Parameters in PEFT's ParameterDicts (keys without ".weight").
int64_t in_channels(const Dims& d, const HyperParams& hp) { return d.d_in / loha::conv_kernel(hp); }

TensorSpec loha_a(std::string name, std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [](const Dims& d, const HyperParams& hp) {
            const int64_t r = lowrank::rank(hp);
            return loha::tucker_form(hp) ? Shape{r, d.d_out} : Shape{d.d_out, r};
          },
          std::move(key), "kaiming_uniform(a=sqrt(5))", std::move(zero_grad_at_init), {}};
}

TensorSpec loha_b(std::string name, std::string init, std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [](const Dims& d, const HyperParams& hp) {
            return Shape{lowrank::rank(hp), loha::tucker_form(hp) ? in_channels(d, hp) : d.d_in};
          },
          std::move(key), std::move(init), std::move(zero_grad_at_init), {}};
}

TensorSpec loha_core(std::string name, std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [](const Dims&, const HyperParams& hp) {
            const int64_t r = lowrank::rank(hp);
            return Shape{r, r * loha::conv_kernel(hp)};
          },
          std::move(key), "kaiming_uniform(a=sqrt(5))", std::move(zero_grad_at_init), loha::tucker_form};
}

void validate(const Dims& dims, const HyperParams& hp) {
  lowrank::validate(dims, hp);
  conv::validate_kernel(dims, hp);
}

}  // namespace

const AdapterInfo& loha_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("loha", "LOHA",
                                          "Y = X Wᵀ + b + X ΔWᵀ, ΔW = s·(w1a w1b) ⊙ (w2a w2b), s = alpha/r",
                                          {loha::forward<double>, loha::backward<double>},
                                          {loha::forward<float>, loha::backward<float>});
    // PEFT LoHaConfig: r = 8, alpha = 8; the layer's scaling is alpha / r (no rsLoRA variant).
    a.hyper = {
        {"r", 8, HyperParamSpec::Kind::integer, "rank of each of the two Hadamard factors (rank(ΔW) <= r²)"},
        {"alpha", 8, HyperParamSpec::Kind::real, "scaling = alpha / r"},
        {"use_effective_conv2d", 0, HyperParamSpec::Kind::flag,
         "a convolution's Tucker form: M = core ×₁ w_a ×₂ w_b per kernel position (PEFT builds it only on "
         "convolutions with a kernel larger than 1; at conv_kernel 1 it is a core between the two factors)"},
        conv::kernel_hyper("the Tucker form's core has one slice per kernel position"),
    };
    a.scaling = loha::scaling;
    a.validate = validate;
    const std::string m2_zero = "hada_w2_b is zero at init, so M2 = w2a w2b = 0 and ";
    a.tensors.push_back(loha_a("hada_w1_a", m2_zero + "dL/dw1a = (G ⊙ M2) w1bᵀ = 0"));
    a.tensors.push_back(loha_b("hada_w1_b", "kaiming_uniform(a=sqrt(5))", m2_zero + "dL/dw1b = w1aᵀ (G ⊙ M2) = 0"));
    a.tensors.push_back(loha_a("hada_w2_a", "hada_w2_b is zero at init, so dL/dw2a = (G ⊙ M1) w2bᵀ = 0"));
    a.tensors.push_back(loha_b("hada_w2_b", "zeros", ""));
    a.tensors.push_back(loha_core("hada_t1", m2_zero + "dL/dt1 = w1a dM1 w1bᵀ per kernel position = 0"));
    a.tensors.push_back(loha_core("hada_t2", "hada_w2_b is zero at init, so dL/dt2 = w2a dM2 w2bᵀ = 0"));
    // The torch backend's rank-r² path: forming U (d_out, r²) and V (r², d_in), then two thin GEMMs of width r².
    // The Tucker form is dense: one GEMM with W + ΔW, plus each side's rebuild (≈ 2·r·d_out·d_in) forming ΔW.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r = static_cast<double>(lowrank::rank(hp)), r2 = r * r;
      if (loha::tucker_form(hp)) return Cost{2.0 * n * d.d_in * d.d_out + 4.0 * r * d.d_in * d.d_out,
                                             4.0 * (n * (d.d_in + d.d_out) + 3.0 * d.d_in * d.d_out)};
      Cost c = lowrank::forward_cost(n, d, r2);
      c.flops += r2 * (d.d_in + d.d_out);
      return c;
    };
    // dU, dV, dX's adapter term (width r²) and the reductions of dU, dV back to the four factors; the Tucker form:
    // G = dYᵀX and dX (two base-sized GEMMs) and each side's three backward contractions.
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r = static_cast<double>(lowrank::rank(hp)), r2 = r * r;
      if (loha::tucker_form(hp)) return Cost{4.0 * n * d.d_in * d.d_out + 12.0 * r * d.d_in * d.d_out,
                                             4.0 * (2.0 * n * (d.d_in + d.d_out) + 4.0 * d.d_in * d.d_out)};
      Cost c = lowrank::backward_cost(n, d, r2);
      c.flops += 5.0 * r2 * (d.d_in + d.d_out);
      return c;
    };
    // PEFT's LoHa multiplies ΔW (and, backward, the upstream gradient) by torch.tensor(alpha / r): a float32 scalar,
    // also in a float64 layer. Where alpha / r is not exact in float32 (alpha = 8, r = 3) every adapter term PEFT
    // produces is off by the relative rounding of s, up to 2^-24 ≈ 6e-8 (measured 2.98e-8 at s = 8/3): beyond the
    // float64 policy. gradguard keeps the exact s; comparisons against PEFT's live layer allow this rounding.
    a.tolerance_overrides = {
        {"peft", 1e-6, 1e-7,
         "PEFT's HadaWeight scales by torch.tensor(alpha / r), a float32 scalar even in float64 layers: relative "
         "error up to 2^-24 ≈ 6e-8 of each adapter term (1e-6 absolute covers cancellation with the base term at the "
         "O(1) magnitudes of the checks)"},
    };
    a.notes = {
        "the torch backend never forms ΔW: (w1a w1b) ⊙ (w2a w2b) = U V with U[:, i·r+j] = w1a[:, i] ⊙ w2a[:, j] "
        "(d_out, r²) and V[i·r+j, :] = w1b[i, :] ⊙ w2b[j, :] (r², d_in), so Y += s·(X Vᵀ) Uᵀ",
        "PEFT accepts any r >= 1; gradguard requires r <= min(d_in, d_out) (rank(ΔW) <= r² already saturates there)",
        "rank_dropout and module_dropout are training extras with random masks; the op is the dropout-free layer "
        "(from_peft rejects a layer with either > 0)",
        "PEFT multiplies ΔW by torch.tensor(alpha / r), a float32 scalar, also for float64 layers: PEFT's float64 "
        "output carries the float32 rounding of s (relative ~6e-8) where alpha / r is not exact in float32",
    };
    // Found by gradguard's audit (finite differences in float64 decide): PEFT's HadaWeightCP.backward builds each
    // side's `temp` from the other side's core and w_b, so dw1a pairs dM1 with t2 ×₂ w2b (and dw2a with t1 ×₂ w1b)
    // instead of its own side's; the other four gradients are right.
    for (const char* tensor : {"d hada_w1_a", "d hada_w2_a"})
      a.peft_defects.push_back(
          {tensor, loha::tucker_form, {{"use_effective_conv2d", 0}},
           "PEFT 0.21.2's HadaWeightCP.backward (loha/layer.py, the use_effective_conv2d form) computes the gradient "
           "of hada_w1_a with the second side's core and mode factor (t2, w2_b) and that of hada_w2_a with the "
           "first's: both wrong whenever the two sides differ, which training makes them",
           "tests/python/test_peft_defects.py::test_known_peft_defect_loha_tucker_backward"});
    a.backends.push_back(linear::cuda_support());  // cuda.cpp: the torch composition, in every float dtype
    a.layer_types = {"Linear", "Conv1d", "Conv2d"};
    a.grouped_convolutions = true;
    a.notes.push_back("on convolutions: the default form (hada_w*_b over in_channels·kernel), or with "
                      "use_effective_conv2d the Tucker form (cores hada_t1/t2 over the kernel positions, "
                      "core/tucker.hpp), formed densely by the torch backend as by PEFT");
    return a;
  }();
  return info;
}

}  // namespace gg
