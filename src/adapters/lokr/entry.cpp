// Registry entry for `lokr` (PEFT LoKrConfig: lokr Linear, and Conv1d/Conv2d lowered to a Linear with conv_kernel).
#include "adapters/lokr/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

using Side = Shape (*)(const lokr::KronDims&, int64_t r, const HyperParams& hp);

// A LoKr factor: bare nn.Parameters in PEFT's ParameterDicts (keys without ".weight"), present when `when` holds.
TensorSpec lokr_tensor(std::string name, Side shape, bool (*when)(const HyperParams&), std::string init,
                       std::string zero_grad_at_init) {
  std::string key = name + ".{adapter}";
  return {std::move(name), TensorRole::trainable,
          [shape](const Dims& dims, const HyperParams& hp) { return shape(lokr::kron_dims(dims, hp), lowrank::rank(hp), hp); },
          std::move(key), std::move(init), std::move(zero_grad_at_init), when};
}

bool whole_w1(const HyperParams& hp) { return hp.at("use_w1") != 0.0; }
bool split_w1(const HyperParams& hp) { return hp.at("use_w1") == 0.0; }
bool whole_w2(const HyperParams& hp) { return hp.at("use_w2") != 0.0; }
bool split_w2(const HyperParams& hp) { return hp.at("use_w2") == 0.0; }
// w2 factored in the Tucker form (use_effective_conv2d): PEFT builds it only where it factors w2 at all.
bool tucker_w2(const HyperParams& hp) { return split_w2(hp) && lokr::tucker_form(hp); }

// PEFT's choice, per layer: w1 is factored only with decompose_both and a rank below half its larger side; w2 is
// factored whenever the rank is below half of its larger side.
void derive(const Dims& dims, HyperParams& hp) {
  const lokr::KronDims k = lokr::kron_dims(dims, hp);
  const double r = hp.at("r");
  hp["use_w1"] = (hp.at("decompose_both") != 0.0 && r < std::max(k.a, k.c) / 2.0) ? 0.0 : 1.0;
  hp["use_w2"] = r < std::max(k.b, k.d_channels) / 2.0 ? 0.0 : 1.0;  // channels only on a convolution, as PEFT
}

void validate(const Dims& dims, const HyperParams& hp) {
  lowrank::validate_rank(dims, hp, "r", lowrank::RankBound::none);  // PEFT allows any r for the Kronecker sides
  conv::validate_kernel(dims, hp);
  const double f = hp.at("decompose_factor");
  if (f == 0 || f < -1)
    throw InputError("decompose_factor", "-1 (factors near the square root) or a positive integer",
                     std::to_string(static_cast<int64_t>(f)));
}

}  // namespace

const AdapterInfo& lokr_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry("lokr", "LOKR", "Y = X Wᵀ + b + X ΔWᵀ, ΔW = s·(w1 ⊗ w2), s = alpha/r",
                                          {lokr::forward<double>, lokr::backward<double>},
                                          {lokr::forward<float>, lokr::backward<float>});
    // PEFT LoKrConfig: r = 8, alpha = 8, decompose_both = False, decompose_factor = -1.
    a.hyper = {
        {"r", 8, HyperParamSpec::Kind::integer, "rank of the factored Kronecker sides"},
        {"alpha", 8, HyperParamSpec::Kind::real, "scaling = alpha / r"},
        {"decompose_both", 0, HyperParamSpec::Kind::flag, "also factor w1 into w1_a w1_b when r is small enough"},
        {"decompose_factor", -1, HyperParamSpec::Kind::integer,
         "Kronecker factorization divider of each dim (-1: factors near the square root)"},
        conv::kernel_hyper("PEFT factorizes the channels only and w2 carries the kernel"),
        {"use_effective_conv2d", 0, HyperParamSpec::Kind::flag,
         "a convolution's Tucker form of a factored w2: core lokr_t2 ×₁ w2_a ×₂ w2_b per kernel position (PEFT "
         "builds it only on convolutions with a kernel larger than 1; at conv_kernel 1 a core between the factors)"},
        {"use_w1", 1, HyperParamSpec::Kind::derived, "1: w1 is one tensor; 0: w1 = w1_a w1_b (PEFT decides)"},
        {"use_w2", 1, HyperParamSpec::Kind::derived, "1: w2 is one tensor; 0: w2 = w2_a w2_b (PEFT decides)"},
    };
    a.scaling = lokr::scaling;
    a.validate = validate;
    a.derive = derive;
    const std::string w1_zero = "w1 is zero at init, so ΔW = 0 passes no gradient to the w2 side";
    a.tensors.push_back(lokr_tensor("lokr_w1", [](const lokr::KronDims& k, int64_t, const HyperParams&) { return Shape{k.a, k.c}; },
                                    whole_w1, "zeros", ""));
    a.tensors.push_back(lokr_tensor("lokr_w1_a", [](const lokr::KronDims& k, int64_t r, const HyperParams&) { return Shape{k.a, r}; },
                                    split_w1, "zeros", ""));
    a.tensors.push_back(lokr_tensor("lokr_w1_b", [](const lokr::KronDims& k, int64_t r, const HyperParams&) { return Shape{r, k.c}; },
                                    split_w1, "kaiming_uniform(a=sqrt(5))",
                                    "lokr_w1_a is zero at init, so dL/dw1_b = w1_aᵀ dL/dw1 = 0"));
    a.tensors.push_back(lokr_tensor("lokr_w2", [](const lokr::KronDims& k, int64_t, const HyperParams&) { return Shape{k.b, k.d}; },
                                    whole_w2, "kaiming_uniform(a=sqrt(5))", w1_zero));
    // w2 = w2_a w2_b: (b, r) and (r, d); in the Tucker form the mode factors (r, b) and (r, d_channels) around the
    // core lokr_t2 (r, r·conv_kernel), PEFT's (r, r, *kernel)
    a.tensors.push_back(lokr_tensor(
        "lokr_w2_a",
        [](const lokr::KronDims& k, int64_t r, const HyperParams& hp) { return tucker_w2(hp) ? Shape{r, k.b} : Shape{k.b, r}; },
        split_w2, "kaiming_uniform(a=sqrt(5))", w1_zero));
    a.tensors.push_back(lokr_tensor(
        "lokr_w2_b",
        [](const lokr::KronDims& k, int64_t r, const HyperParams& hp) { return Shape{r, tucker_w2(hp) ? k.d_channels : k.d}; },
        split_w2, "kaiming_uniform(a=sqrt(5))", w1_zero));
    a.tensors.push_back(lokr_tensor("lokr_t2",
                                    [](const lokr::KronDims& k, int64_t r, const HyperParams&) { return Shape{r, r * (k.d / k.d_channels)}; },
                                    tucker_w2, "kaiming_uniform(a=sqrt(5))", w1_zero));
    // The torch backend's reshaped path: T = X₃ w2ᵀ and w1 T (N·c·b·d + N·a·c·b multiply-adds), no dense ΔW.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const auto k = lokr::kron_dims(d, hp);
      const double adapter = 2.0 * n * (double(k.c) * k.b * k.d + double(k.a) * k.c * k.b);
      const double bytes = 4.0 * (n * d.d_in + d.d_in * d.d_out + 2.0 * n * d.d_out + k.a * k.c + k.b * k.d);
      return Cost{2.0 * n * d.d_in * d.d_out + adapter, bytes};
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const auto k = lokr::kron_dims(d, hp);
      const double adapter = 8.0 * n * (double(k.c) * k.b * k.d + double(k.a) * k.c * k.b);
      const double bytes = 4.0 * (2.0 * n * d.d_out + 2.0 * n * d.d_in + d.d_in * d.d_out + 2.0 * (k.a * k.c + k.b * k.d));
      return Cost{2.0 * n * d.d_in * d.d_out + adapter, bytes};
    };
    a.notes = {
        "the torch backend never forms ΔW: with X₃ = X viewed as (N, c, d), X ΔWᵀ = s·w1 (X₃ w2ᵀ) viewed as (N, a·b)",
        "which of w1/w2 PEFT factors depends on the layer's dims (use_w1/use_w2 are derived, as in PEFT's update_layer)",
        "rank_dropout and module_dropout are training extras with random masks; the op is the dropout-free layer "
        "(from_peft rejects a layer with either > 0)",
        "PEFT's default init (w1 = 0, w2 random) is an identity at init; init_weights='lycoris' (w2 = 0) too",
    };
    a.layer_types = {"Linear", "Conv1d", "Conv2d"};
    a.grouped_convolutions = true;
    a.notes.push_back("on convolutions: the default form (w2 over in_channels x kernel), or with "
                      "use_effective_conv2d and a factored w2 the Tucker form (core lokr_t2 over the kernel positions, "
                      "core/tucker.hpp)");
    return a;
  }();
  return info;
}

}  // namespace gg
