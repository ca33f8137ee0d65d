// Registry entry for `loha` (PEFT LoHaConfig, loha Linear around nn.Linear; no CP/Tucker factors for Linear).
#include "adapters/loha/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

// w*_a (d_out, r) and w*_b (r, d_in), bare nn.Parameters in PEFT's ParameterDicts (keys without ".weight").
TensorSpec loha_a(std::string name, std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, lowrank::rank(hp)}; }, std::move(key),
          "kaiming_uniform(a=sqrt(5))", std::move(zero_grad_at_init), {}};
}

TensorSpec loha_b(std::string name, std::string init, std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [](const Dims& d, const HyperParams& hp) { return Shape{lowrank::rank(hp), d.d_in}; }, std::move(key),
          std::move(init), std::move(zero_grad_at_init), {}};
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
    };
    a.scaling = loha::scaling;
    const std::string m2_zero = "hada_w2_b is zero at init, so M2 = w2a w2b = 0 and ";
    a.tensors.push_back(loha_a("hada_w1_a", m2_zero + "dL/dw1a = (G ⊙ M2) w1bᵀ = 0"));
    a.tensors.push_back(loha_b("hada_w1_b", "kaiming_uniform(a=sqrt(5))", m2_zero + "dL/dw1b = w1aᵀ (G ⊙ M2) = 0"));
    a.tensors.push_back(loha_a("hada_w2_a", "hada_w2_b is zero at init, so dL/dw2a = (G ⊙ M1) w2bᵀ = 0"));
    a.tensors.push_back(loha_b("hada_w2_b", "zeros", ""));
    // The torch backend's rank-r² path: forming U (d_out, r²) and V (r², d_in), then two thin GEMMs of width r².
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r2 = std::pow(static_cast<double>(lowrank::rank(hp)), 2);
      Cost c = lowrank::forward_cost(n, d, r2);
      c.flops += r2 * (d.d_in + d.d_out);
      return c;
    };
    // dU, dV, dX's adapter term (width r²) and the reductions of dU, dV back to the four factors.
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double r2 = std::pow(static_cast<double>(lowrank::rank(hp)), 2);
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
    a.layer_types = {"Linear", "Conv1d", "Conv2d"};
    a.notes.push_back("on convolutions: the default form (hada_w*_b over in_channels·kernel); use_effective_conv2d (Tucker cores hada_t1/t2) is not modelled and is refused by from_peft");
    return a;
  }();
  return info;
}

}  // namespace gg
