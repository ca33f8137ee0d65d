// Registry entry for `waveft` (PEFT WaveFTConfig, WaveFTLinear around nn.Linear; the Haar wavelet, PEFT's default).
#include <cmath>

#include "adapters/waveft/eigen.hpp"
#include "core/lowrank.hpp"
#include "core/positions.hpp"

namespace gg {

namespace {

int64_t coefficients(const HyperParams& hp) { return static_cast<int64_t>(hp.at("n_frequency")); }

void validate(const Dims& d, const HyperParams& hp) { lowrank::validate_grid_entries(d, hp, "n_frequency"); }

// The torch backend: the coefficients' 4 (Haar) basis entries each scattered into a copy of W, one GEMM; the backward
// adds the sampled products of dY and X at those entries (N multiply-adds, 2N values read each).
Cost cost(int64_t n, const Dims& d, const HyperParams& hp, bool backward) {
  const double entries = 4.0 * hp.at("n_frequency");
  Cost c = backward ? lowrank::backward_cost(n, d, 0) : lowrank::forward_cost(n, d, 0);
  c.flops += backward ? 2.0 * n * entries : 2.0 * entries;
  c.bytes += 4.0 * (2.0 * d.d_in * d.d_out + (backward ? 2.0 * n * entries : 3.0 * entries));
  return c;
}

}  // namespace

const AdapterInfo& waveft_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "waveft", "WAVEFT", "Y = X (W + ΔW)ᵀ + b, ΔW = scaling · IDWT2(c at n fixed entries), Haar wavelet",
        {waveft::forward<double>, waveft::backward<double>}, {waveft::forward<float>, waveft::backward<float>});
    a.hyper = {{"n_frequency", 2592, HyperParamSpec::Kind::integer, "number of trainable wavelet coefficients"},
               {"scaling", 25.0, HyperParamSpec::Kind::real, "the factor ΔW is multiplied by"},
               {"use_idwt", 1, HyperParamSpec::Kind::flag,
                "1: the coefficients are wavelet coefficients (ΔW their inverse transform); 0: ΔW's own entries"}};
    a.rank_param = "n_frequency";
    a.scaling = [](const HyperParams& hp) { return hp.at("scaling"); };
    a.validate = validate;
    a.tensors.push_back(positions_spec("waveft_indices",
                                       [](const Dims&, const HyperParams& hp) { return coefficients(hp); },
                                       "waveft_indices.{adapter}",
                                       "the first n of torch.randperm(d_out · d_in) with generator seed random_loc_seed "
                                       "(777) as (p // d_in, p % d_in)"));
    a.tensors.push_back({"waveft_spectrum", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{coefficients(hp)}; },
                         "waveft_spectrum.{adapter}", "zeros",
                         "", {}});
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, false); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams& hp) { return cost(n, d, hp, true); };
    a.notes = {"identity at init (c = 0; init_weights=True, the default; False draws N(0, 0.01²))",
               "the Haar wavelet only (PEFT's default wavelet_family db1, alias haar): from_peft refuses other "
               "families by name; the transform code takes any filter pair",
               "the generic checks' rank sets n_frequency"};
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
