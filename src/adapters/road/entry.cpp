// Registry entry for `road` (PEFT RoadConfig, road Linear around nn.Linear).
#include "adapters/road/eigen.hpp"
#include "core/lowrank.hpp"

namespace gg {

namespace {

void validate(const Dims& d, const HyperParams& hp) {
  const int64_t v = road::variant(hp), g = road::group(hp);
  if (v != 1 && v != 2 && v != 4) throw InputError("variant", "1, 2 or 4 (PEFT's road_1, road_2, road_4)", std::to_string(v));
  if (g < 2 || g % 2 != 0) throw InputError("group_size", "an even integer >= 2", std::to_string(g));
  if (d.d_out % g != 0)
    throw InputError("group_size", "a divisor of d_out = " + std::to_string(d.d_out) + " (rows pair within groups)",
                     std::to_string(g));
}

// Pairs of rows need an even d_out: odd check shapes get one more output.
void fit_dims(Dims& d) { d.d_out += d.d_out % 2; }

// The largest even divisor of d_out up to PEFT's default 64 (2 at worst once fit_dims made d_out even; an odd d_out
// given explicitly gets 2, which resolve_hyper then refuses by name).
void shape_hyper(const Dims& d, int64_t, HyperParams& hp) {
  int64_t g = std::min<int64_t>(64, d.d_out);
  while (g > 2 && (d.d_out % g != 0 || g % 2 != 0)) --g;
  hp["group_size"] = static_cast<double>(g);
}

// The base GEMM plus a few multiplies per output element (rotate, scale), twice in the backward (dz, df, ds).
Cost cost(int64_t n, const Dims& d, bool backward) {
  Cost c = backward ? lowrank::backward_cost(n, d, 0) : lowrank::forward_cost(n, d, 0);
  c.flops += (backward ? 8.0 : 3.0) * n * d.d_out;
  c.bytes += 4.0 * 4.0 * d.d_out;
  return c;
}

}  // namespace

const AdapterInfo& road_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "road", "ROAD", "Y = f ⊙ z + s ⊙ rot(z), z = X Wᵀ + b, 2-D rotations of output pairs (f = α cos θ, s = α sin θ)",
        {road::forward<double>, road::backward<double>}, {road::forward<float>, road::backward<float>});
    a.hyper = {{"variant", 1, HyperParamSpec::Kind::integer,
                "PEFT's variant road_1 / road_2 / road_4 as 1, 2, 4: d_out/2, d_out or 2 d_out angles and scales"},
               {"group_size", 64, HyperParamSpec::Kind::integer,
                "outputs are rotated in groups of this many (even, divides d_out): row i pairs with row i + g/2"}};
    a.rank_param = "";
    a.scaling = [](const HyperParams&) { return 1.0; };
    a.validate = validate;
    a.fit_dims = fit_dims;
    a.shape_hyper = shape_hyper;
    for (const char* name : {"road_theta", "road_alpha"})
      a.tensors.push_back({name, TensorRole::trainable,
                           [](const Dims& d, const HyperParams& hp) { return Shape{road::params(d.d_out, hp)}; },
                           std::string(name) + ".{adapter}",
                           std::string(name) == "road_theta" ? "zeros" : "ones", "", {}});
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams&) { return cost(n, d, false); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams&) { return cost(n, d, true); };
    a.notes = {"identity at init (θ = 0, α = 1); the rotation applies to the base output with its bias",
               "generic checks give odd widths one more output (pairs need an even d_out) and use the largest even "
               "group that divides d_out, at most 64",
               "PEFT 0.21.2 unmerges RoAd by inverting R in float32 whatever the layer's dtype (a known defect, "
               "see the OFT/RoAd unmerge regression test)"};
    return a;
  }();
  return info;
}

}  // namespace gg
