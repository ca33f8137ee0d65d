// Registry entry for `ia3` (PEFT IA3Config, ia3 Linear around nn.Linear). Not low-rank: only the base layer's
// tensors are shared with the LoRA family (core/linear.hpp).
#include <string>

#include "adapters/ia3/eigen.hpp"
#include "core/errors.hpp"
#include "core/linear.hpp"

namespace gg {

const AdapterInfo& ia3_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a;
    a.name = "ia3";
    a.peft_type = "IA3";
    a.summary = "Y = (X Wᵀ + b) ⊙ l, l (d_out); with is_feedforward Y = (X ⊙ l) Wᵀ + b, l (d_in)";
    a.hyper = {{"is_feedforward", 0, HyperParamSpec::Kind::flag,
                "1: l (d_in) scales the layer's input (a module in IA3Config.feedforward_modules); 0: l (d_out) "
                "scales its output, bias included"},
               conv::kernel_hyper("the input form then has one value per channel")};
    a.validate = conv::validate_kernel;
    a.tensors = linear::base_tensors();
    a.tensors.push_back({"ia3_l", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           return Shape{ia3::feedforward(hp) ? d.d_in / ia3::conv_kernel(hp) : d.d_out};
                         },
                         "ia3_l.{adapter}", "ones", "", {}});
    a.scaling = [](const HyperParams&) { return 1.0; };  // IA3 has no scaling factor: l is the whole update
    a.eigen64 = {ia3::forward<double>, ia3::backward<double>};
    a.eigen32 = {ia3::forward<float>, ia3::backward<float>};
    a.backends = {{"eigen", {"float64", "float32"}, ""}, {"torch", {"float64", "float32"}, ""}, linear::cuda_support()};
    // The base GEMM plus one multiply per element of the scaled side (output: N·d_out, input: N·d_in).
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double len = static_cast<double>(ia3::feedforward(hp) ? d.d_in : d.d_out);
      const double scaled = static_cast<double>(n) * len;
      const double flops = 2.0 * n * d.d_in * d.d_out + scaled;
      const double bytes = 4.0 * (n * d.d_in + d.d_in * d.d_out + d.d_out + n * d.d_out + len);
      return Cost{flops, bytes};
    };
    // dX (one GEMM) and dl (a multiply and a column sum over N rows), plus the dX scaling.
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double len = static_cast<double>(ia3::feedforward(hp) ? d.d_in : d.d_out);
      const double scaled = static_cast<double>(n) * len;
      const double flops = 2.0 * n * d.d_in * d.d_out + 3.0 * scaled;
      const double bytes = 4.0 * (2.0 * n * d.d_out + 2.0 * n * d.d_in + d.d_in * d.d_out + 2.0 * len);
      return Cost{flops, bytes};
    };
    a.identity_at_init = true;
    a.notes = {
        "PEFT stores ia3_l as (d_out, 1), or (1, d_in) for a feed-forward module; the registry's shape is the vector "
        "and from_peft/load_into_peft reshape",
        "is_feedforward is not an IA3Config field: PEFT decides it per layer from feedforward_modules; the bridge maps "
        "the flag to feedforward_modules (every target module, or none)",
        "the output form scales the base bias too (PEFT multiplies base_layer(x) by l; merging scales W's rows and b)",
    };
    a.layer_types = {"Linear", "Conv2d", "Conv3d", "Conv1D"};
    a.grouped_convolutions = true;
    a.notes.push_back("on a convolution the input (feed-forward) form scales input channels: l has one value per channel, "
                      "shared by its kernel positions (conv_kernel)");
    return a;
  }();
  return info;
}

}  // namespace gg
