// Registry entry for `delora` (PEFT DeloraConfig, DeloraLinear around nn.Linear).
#include "adapters/delora/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

const AdapterInfo& delora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "delora", "DELORA", "Y = X Wᵀ + b + ((X ⊙ w) Aᵀ ⊙ λ / (r ‖A_i‖ ‖B_i‖)) Bᵀ, norms clamped at 1e-4",
        {delora::forward<double>, delora::backward<double>}, {delora::forward<float>, delora::backward<float>});
    // delora_lambda only initialises the trainable λ, so it is not a hyper-parameter of the maths.
    a.hyper = {{"r", 8, HyperParamSpec::Kind::integer, "rank of the update"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.tensors.push_back({"delora_w_norm", TensorRole::frozen,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_in}; }, "delora_w_norm.{adapter}",
                         "column norms of the base weight at init (‖W_{:,j}‖), a persistent buffer", "", {}});
    // LoRA's factor shapes and init (kaiming A, zero B) under DeLoRA's own names.
    TensorSpec A = lowrank::lora_A("B is zero at init, so dL/dA = 0 (the norm terms carry dc = 0 too)", "delora_A.{adapter}");
    TensorSpec B = lowrank::lora_B("", "delora_B.{adapter}");
    A.name = "delora_A";
    B.name = "delora_B";
    a.tensors.push_back(std::move(A));
    a.tensors.push_back(std::move(B));
    a.tensors.push_back({"delora_lambda", TensorRole::trainable,
                         [](const Dims&, const HyperParams&) { return Shape{1}; }, "delora_lambda.{adapter}",
                         "delora_lambda (15)", "B is zero at init, so the update and dL/dλ are 0", {}});
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, lowrank::rank(hp));
      c.flops += double(n) * d.d_in;  // X ⊙ w
      return c;
    };
    a.notes = {"the rank-r path on thin intermediates: X ⊙ w feeds A, the per-rank scale λ / (r ‖A_i‖ ‖B_i‖) "
               "multiplies the (N, r) product; the clamps at 1e-4 pass no gradient where they bite, as in PEFT"};
    return a;
  }();
  return info;
}

}  // namespace gg
