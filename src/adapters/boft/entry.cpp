// Registry entry for `boft` (PEFT BOFTConfig, boft Linear around nn.Linear).
#include "adapters/boft/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

void validate(const Dims& d, const HyperParams& hp) {
  const int64_t h = boft::block_size(hp), m = boft::factors(hp);
  if (h < 2 || d.d_in % h != 0)
    throw InputError("boft_block_size", "an integer >= 2 dividing d_in = " + std::to_string(d.d_in), std::to_string(h));
  if (m < 1) throw InputError("boft_n_butterfly_factor", "an integer >= 1", std::to_string(m));
  if (m == 1) return;
  // PEFT's rules for butterflies: the widest chunk H·2^(m−1) fits in and tiles d_in, and the halves are whole. The
  // doubling stops at d_in, so no m overflows the shift.
  int64_t widest = h;
  for (int64_t i = 1; i < m && widest <= d.d_in; ++i) widest *= 2;
  if (widest > d.d_in || d.d_in % widest != 0)
    throw InputError("boft_n_butterfly_factor", "a factor m with boft_block_size · 2^(m−1) = " + std::to_string(widest) +
                                                    " dividing d_in = " + std::to_string(d.d_in), std::to_string(m));
  if (h % 2 != 0)
    throw InputError("boft_block_size", "an even integer (butterfly factors swap half-blocks)", std::to_string(h));
}

void shape_hyper(const Dims& d, int64_t, HyperParams& hp) {
  hp["boft_block_size"] = static_cast<double>(oft::check_block_size(d.d_in));
}

// Base GEMM(s) plus, per factor, X's blocks times H x H rotations and the rotations' Cayley transforms (the backward
// about twice the forward's rotation work, with the Cayley backward's extra products).
Cost cost(int64_t n, const Dims& d, const HyperParams& hp, bool backward) {
  const double h = double(boft::block_size(hp)), m = double(boft::factors(hp)), k = backward ? 2.0 : 1.0;
  Cost c = backward ? lowrank::backward_cost(n, d, 0, 2) : lowrank::forward_cost(n, d, 0, 1);
  c.flops += m * (k * 2.0 * n * d.d_in * h + (backward ? 12.0 : 4.0) * d.d_in * h * h);
  c.bytes += k * 4.0 * m * d.d_in * h;
  return c;
}

}  // namespace

const AdapterInfo& boft_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "boft", "BOFT", "Y = ((X M) Wᵀ) ⊙ s + b, M = Π_i P_i blockdiag(Cayley((A − Aᵀ)/2)) P_iᵀ (butterfly)",
        {boft::forward<double>, boft::backward<double>}, {boft::forward<float>, boft::backward<float>});
    a.hyper = {
        {"boft_block_size", 4, HyperParamSpec::Kind::integer, "rotation block size H; must divide d_in"},
        {"boft_n_butterfly_factor", 1, HyperParamSpec::Kind::integer, "number of butterfly factors m"},
    };
    a.rank_param = "";
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    a.tensors.push_back({"boft_R", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           const int64_t h = boft::block_size(hp);
                           return Shape{boft::factors(hp), d.d_in / h, h, h};
                         },
                         "boft_R.{adapter}", "zeros", "", {}});  // S = 0: every Q = I
    a.tensors.push_back({"boft_s", TensorRole::trainable,
                         [](const Dims& d, const HyperParams&) { return Shape{d.d_out, 1}; }, "boft_s.{adapter}", "ones",
                         "", {}});
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, false); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, true); };
    a.notes = {
        "the butterfly rotations act on X's columns (a permutation, H x H block products, the inverse permutation per "
        "factor); M is never formed by the torch backend",
        "without its CUDA extension (fbd_cuda) PEFT 0.21.2 forces boft_n_butterfly_factor to 1 before validating "
        "anything, so PEFT-side comparisons here cover m = 1; m > 1 is checked by finite differences and across backends",
        "boft_R's diagonal never receives a gradient (the skew part removes it), at any point",
    };
    a.layer_types = {"Linear", "Conv2d"};
    return a;
  }();
  return info;
}

}  // namespace gg
