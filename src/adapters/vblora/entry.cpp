// Registry entry for `vblora` (PEFT VBLoRAConfig, vblora Linear around nn.Linear).
#include <numeric>

#include "adapters/vblora/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

int64_t vectors(const HyperParams& hp) { return static_cast<int64_t>(hp.at("num_vectors")); }

// The mixtures' work on top of LoRA's rank-r path: top-k over num_vectors and k·L multiply-adds per tile.
double mixing(const Dims& d, const HyperParams& hp) {
  const double tiles = double(lowrank::rank(hp)) * double(d.d_in + d.d_out) / double(vblora::length(hp));
  return tiles * (double(vectors(hp)) + 2.0 * double(vblora::topk(hp) * vblora::length(hp)));
}

void validate(const Dims& d, const HyperParams& hp) {
  lowrank::validate_rank(d, hp, "r", lowrank::RankBound::none);  // PEFT accepts any r >= 1 here
  const int64_t L = vblora::length(hp), k = vblora::topk(hp), nv = vectors(hp);
  if (nv < 1) throw InputError("num_vectors", "an integer >= 1", std::to_string(nv));
  if (k < 1 || k > nv) throw InputError("topk", "an integer in [1, num_vectors = " + std::to_string(nv) + "]", std::to_string(k));
  if (L < 1 || d.d_in % L != 0 || d.d_out % L != 0)
    throw InputError("vector_length", "a divisor of both d_in = " + std::to_string(d.d_in) + " and d_out = " +
                                          std::to_string(d.d_out), std::to_string(L));
}

// The smallest vector length > 1 that tiles both widths (several tiles per row, so the tiling is exercised), 1 on
// coprime widths; and a bank of 16 vectors, not 256: a check case's few tiles select from it just the same, while
// PEFT's 256 would make every case (and golden file) mostly unselected logits.
void shape_hyper(const Dims& d, int64_t, HyperParams& hp) {
  const int64_t common = std::gcd(d.d_in, d.d_out);
  int64_t L = common > 1 ? 2 : 1;
  while (L < common && common % L != 0) ++L;
  hp["vector_length"] = static_cast<double>(L);
  hp["num_vectors"] = 16;
}

}  // namespace

const AdapterInfo& vblora_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "vblora", "VBLORA", "Y = X Wᵀ + b + (X Aᵀ) Bᵀ, every length-L tile of A and B a top-k softmax mixture of a vector bank",
        {vblora::forward<double>, vblora::backward<double>}, {vblora::forward<float>, vblora::backward<float>});
    a.hyper = {{"r", 4, HyperParamSpec::Kind::integer, "rank of the update"},
               {"num_vectors", 256, HyperParamSpec::Kind::integer, "vectors in the bank"},
               {"vector_length", 256, HyperParamSpec::Kind::integer, "length L of a bank vector: divides d_in and d_out"},
               {"topk", 2, HyperParamSpec::Kind::integer, "bank vectors mixed per tile"}};
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.shape_hyper = shape_hyper;
    a.tensors.push_back({"vblora_vector_bank", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{vectors(hp), vblora::length(hp)}; },
                         "vblora_vector_bank.{adapter}",
                         "uniform(−init_vector_bank_bound, +) = ±0.02; one bank shared by every layer of the model", "", {}});
    a.tensors.push_back({"vblora_logits_A", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           return Shape{lowrank::rank(hp), d.d_in / vblora::length(hp), vectors(hp)};
                         },
                         "vblora_logits_A.{adapter}", "normal(0, init_logits_std = 0.1)", "", {}});
    a.tensors.push_back({"vblora_logits_B", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) {
                           return Shape{d.d_out / vblora::length(hp), lowrank::rank(hp), vectors(hp)};
                         },
                         "vblora_logits_B.{adapter}", "normal(0, init_logits_std = 0.1)", "", {}});
    a.identity_at_init = false;
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::forward_cost(n, d, lowrank::rank(hp));
      c.flops += mixing(d, hp);
      return c;
    };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) {
      Cost c = lowrank::backward_cost(n, d, lowrank::rank(hp));
      c.flops += 2.0 * mixing(d, hp);
      return c;
    };
    a.notes = {"not the identity at PEFT's init (bank and logits both random)",
               "only the k selected logits of each tile get a gradient (top-k is locally constant), as in PEFT; at "
               "logits tied at the k-th place the selection (and so the function) jumps and implementations may pick "
               "different vectors (torch.topk's order among ties is unspecified; the reference takes the lower index)",
               "the bank is one tensor shared by every adapted layer of a model: a per-layer check sees its share"};
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
