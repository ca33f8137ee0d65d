// Registry entry for `oft` (PEFT OFTConfig, oft Linear around nn.Linear).
#include "adapters/oft/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

void validate(const Dims& d, const HyperParams& hp) {
  const int64_t h = oft::block_size(hp);
  // PEFT silently moves a block size that does not divide d_in to a nearby one; gradguard says so instead.
  if (h < 2 || d.d_in % h != 0)
    throw InputError("oft_block_size", "an integer >= 2 dividing d_in = " + std::to_string(d.d_in), std::to_string(h));
  const auto n = static_cast<int64_t>(hp.at("num_cayley_neumann_terms"));
  if (oft::neumann(hp) && n < 2)
    throw InputError("num_cayley_neumann_terms",
                     "an integer >= 2 (with fewer terms PEFT's series is R = I: the adapter is inert and its gradient 0)",
                     std::to_string(n));
}

void shape_hyper(const Dims& d, int64_t, HyperParams& hp) {
  hp["oft_block_size"] = static_cast<double>(oft::check_block_size(d.d_in));
}

}  // namespace

const AdapterInfo& oft_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "oft", "OFT", "Y = (X · blockdiag(R_i)) Wᵀ + b, R_i Cayley(–Neumann) of a skew S_i from the upper triangle",
        {oft::forward<double>, oft::backward<double>}, {oft::forward<float>, oft::backward<float>});
    a.hyper = {
        {"oft_block_size", 32, HyperParamSpec::Kind::integer, "rotation block size H; must divide d_in (PEFT adjusts it)"},
        {"use_cayley_neumann", 1, HyperParamSpec::Kind::flag, "truncated Neumann series (PEFT's default) instead of the exact Cayley"},
        {"num_cayley_neumann_terms", 5, HyperParamSpec::Kind::integer, "terms of the series (m = max(n − 1, 3) powers)"},
        {"block_share", 0, HyperParamSpec::Kind::flag, "one rotation shared by every block"},
    };
    a.rank_param = "";
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    a.tensors.push_back({"oft_R", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           const int64_t h = oft::block_size(hp);
                           return Shape{hp.at("block_share") != 0.0 ? 1 : d.d_in / h, oft::pairs(h)};
                         },
                         "oft_R.{adapter}.weight", "zeros", "", {}});  // S = 0: R = I
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double h = double(oft::block_size(hp));
      Cost c = lowrank::forward_cost(n, d, 0);
      c.flops += 2.0 * n * d.d_in * h + 2.0 * d.d_in * h * h * 5;  // X·R per block; R from S (a few H³ products)
      c.bytes += 4.0 * d.d_in * h;
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      const double h = double(oft::block_size(hp));
      Cost c = lowrank::backward_cost(n, d, 0);
      c.flops += 4.0 * n * d.d_in * h + 2.0 * d.d_in * h * h * 15;
      c.bytes += 8.0 * d.d_in * h;
      return c;
    };
    a.notes = {
        "the rotation multiplies X (per block of d_in), never W: no d_out x d_in product beyond the base GEMM",
        "PEFT's default Cayley–Neumann series converges to the transpose of its exact Cayley mode; both are "
        "registered as PEFT computes them",
        "coft (a no-grad projection of the parameter inside forward) and module_dropout (unused by PEFT 0.21.2's "
        "forward) are not modelled; from_peft refuses a coft layer",
    };
    // On Conv2d the rotation acts on the flattened (in_channels·kh·kw) filter dimension: PEFT's merged weight.
    // PEFT's unmerged forward rotates stride-1 unfolded input patches and folds them back as a sum instead (a
    // confirmed defect, gradguard/peft_defects.py), so comparisons mark it and gradguard follows the merge.
    // On an Embedding PEFT rotates the looked-up rows (the output side, embedding_dim wide): gradguard runs the same
    // Linear maths on those rows with an identity base weight (gradguard/layers.py, "rows" lowering).
    a.layer_types = {"Linear", "Conv2d", "Embedding"};
    a.grouped_convolutions = true;  // rotating all in·k·k patch features of the expanded weight, as PEFT sizes it
    return a;
  }();
  return info;
}

}  // namespace gg
