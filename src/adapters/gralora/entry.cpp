// Registry entry for `gralora` (PEFT GraloraConfig, gralora Linear around nn.Linear).
#include <numeric>

#include "adapters/gralora/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

void validate(const Dims& d, const HyperParams& hp) {
  lowrank::validate_rank(d, hp, "r");
  const auto k = static_cast<int64_t>(hp.at("gralora_k"));
  if (k < 1) throw InputError("gralora_k", "an integer >= 1", std::to_string(k));
  if (hp.at("hybrid_r") < 0) throw InputError("hybrid_r", "an integer >= 0", std::to_string(int64_t(hp.at("hybrid_r"))));
  // PEFT's own rules: the k x k block grid must tile the rank and both widths exactly (no padding).
  const std::pair<const char*, int64_t> sizes[] = {{"r", static_cast<int64_t>(hp.at("r"))}, {"d_in", d.d_in}, {"d_out", d.d_out}};
  for (const auto& [what, size] : sizes)
    if (size % k != 0)
      throw InputError("gralora_k", std::string("a divisor of ") + what + " = " + std::to_string(size), std::to_string(k));
}

// PEFT's default k = 2 where it tiles the shape, else the smallest block count > 1 that does, else 1 (plain LoRA).
void shape_hyper(const Dims& d, int64_t r, HyperParams& hp) {
  const int64_t common = std::gcd(std::gcd(d.d_in, d.d_out), r);
  int64_t k = 1;
  for (int64_t c = 2; c <= common; ++c)
    if (common % c == 0) { k = c; break; }
  hp["gralora_k"] = static_cast<double>(k);
}

TensorSpec factor(std::string name, std::string key, std::function<Shape(const Dims&, const HyperParams&)> shape,
                  std::string init, std::string zero_grad_at_init, bool hybrid) {
  TensorSpec t{std::move(name), TensorRole::trainable, std::move(shape), std::move(key), std::move(init),
               std::move(zero_grad_at_init), {}};
  if (hybrid) t.present = gralora::has_hybrid;
  return t;
}

}  // namespace

const AdapterInfo& gralora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "gralora", "GRALORA", "Y = X Wᵀ + b + σ Σ_n (X_n A[n]_j) B[j]_n per output block j, σ = alpha/(r + hybrid_r)",
        {gralora::forward<double>, gralora::backward<double>}, {gralora::forward<float>, gralora::backward<float>});
    a.hyper = {
        {"r", 32, HyperParamSpec::Kind::integer, "rank of each block row of A and block column of B (r/k per block pair)"},
        {"alpha", 64, HyperParamSpec::Kind::real, "scaling = alpha / (r + hybrid_r)"},
        {"gralora_k", 2, HyperParamSpec::Kind::integer, "blocks per dimension: must divide r, d_in and d_out"},
        {"hybrid_r", 0, HyperParamSpec::Kind::integer, "rank of an extra plain low-rank branch (0: none)"},
    };
    a.scaling = gralora::scaling;
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    const auto k = [](const HyperParams& hp) { return static_cast<int64_t>(hp.at("gralora_k")); };
    const auto r = [](const HyperParams& hp) { return lowrank::rank(hp); };
    const auto hr = [](const HyperParams& hp) { return static_cast<int64_t>(hp.at("hybrid_r")); };
    a.tensors.push_back(factor("gralora_A", "gralora_A.{adapter}",
                               [k, r](const Dims& d, const HyperParams& hp) { return Shape{k(hp), d.d_in / k(hp), r(hp)}; },
                               "kaiming_uniform(a=sqrt(5)) per block on (r, d_in/k), stored transposed",
                               "gralora_B is zero at init, so dL/dA = 0", false));
    a.tensors.push_back(factor("gralora_B", "gralora_B.{adapter}",
                               [k, r](const Dims& d, const HyperParams& hp) { return Shape{k(hp), r(hp), d.d_out / k(hp)}; },
                               "zeros", "", false));
    a.tensors.push_back(factor("gralora_A_general", "gralora_A_general.{adapter}.weight",
                               [hr](const Dims& d, const HyperParams& hp) { return Shape{hr(hp), d.d_in}; },
                               "kaiming_uniform(a=sqrt(5))", "gralora_B_general is zero at init, so dL/dA_general = 0",
                               true));
    a.tensors.push_back(factor("gralora_B_general", "gralora_B_general.{adapter}.weight",
                               [hr](const Dims& d, const HyperParams& hp) { return Shape{d.d_out, hr(hp)}; }, "zeros",
                               "", true));
    // The block pairs cost what one rank-r LoRA costs (k² pairs of rank r/k on widths d/k); the hybrid adds its own.
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      return lowrank::forward_cost(n, d, hp.at("r") + hp.at("hybrid_r"));
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      return lowrank::backward_cost(n, d, hp.at("r") + hp.at("hybrid_r"));
    };
    a.notes = {"generic checks pick gralora_k = 2 where it divides r, d_in and d_out, else the smallest block count "
               "that does (1 on odd/prime shapes, where GraLoRA is plain LoRA)",
               "scaling divides by r + hybrid_r for both branches, as PEFT does"};
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
