// Registry entry for `fourierft` (PEFT FourierFTConfig, FourierFTLinear around nn.Linear).
#include <cmath>

#include "adapters/fourierft/eigen.hpp"
#include "core/lowrank.hpp"
#include "core/positions.hpp"

namespace gg {

namespace {

int64_t frequencies(const HyperParams& hp) { return static_cast<int64_t>(hp.at("n_frequency")); }

void validate(const Dims& d, const HyperParams& hp) { lowrank::validate_grid_entries(d, hp, "n_frequency"); }

// The torch backend's dense path: ΔW by an inverse 2-D FFT merged into W, one GEMM (forward); dX with the merged
// weight, G = dYᵀ X and a forward 2-D FFT of G for the spectrum's gradient (backward). (Its thin path for few
// entries costs less; the model states the path that bounds the cost at realistic entry counts.)
Cost cost(int64_t n, const Dims& d, bool backward) {
  const double grid = double(d.d_in) * d.d_out, fft = 5.0 * grid * std::log2(grid + 1);
  Cost c = backward ? lowrank::backward_cost(n, d, 0) : lowrank::forward_cost(n, d, 0);
  c.flops += backward ? 2.0 * n * grid + fft : fft + grid;
  c.bytes += 4.0 * grid;
  return c;
}

}  // namespace

const AdapterInfo& fourierft_info() {
  static const AdapterInfo info = [] {
    AdapterInfo a = lowrank::family_entry(
        "fourierft", "FOURIERFT",
        "Y = X (W + ΔW)ᵀ + b, ΔW = scaling · Re(IDFT2(c at n fixed spectrum entries))",
        {fourierft::forward<double>, fourierft::backward<double>}, {fourierft::forward<float>, fourierft::backward<float>});
    a.hyper = {{"n_frequency", 1000, HyperParamSpec::Kind::integer, "number of trainable spectrum entries"},
               {"scaling", 150.0, HyperParamSpec::Kind::real, "the factor ΔW is multiplied by"}};
    a.rank_param = "n_frequency";
    a.scaling = [](const HyperParams& hp) { return hp.at("scaling"); };
    a.validate = validate;
    a.tensors.push_back(positions_spec("indices", [](const Dims&, const HyperParams& hp) { return frequencies(hp); },
                                       "indices.{adapter}",
                                       "the first n of torch.randperm(d_out · d_in) with generator seed random_loc_seed "
                                       "(777) as (p // d_in, p % d_in)"));
    a.tensors.push_back({"fourierft_spectrum", TensorRole::trainable,
                         [](const Dims&, const HyperParams& hp) { return Shape{frequencies(hp)}; },
                         "fourierft_spectrum.{adapter}", "randn (init_weights=False, the default); zeros with True",
                         "", {}});
    a.identity_at_init = false;
    a.forward_cost = [](int64_t n, const Dims& d, const HyperParams&) { return cost(n, d, false); };
    a.backward_cost = [](int64_t n, const Dims& d, const HyperParams&) { return cost(n, d, true); };
    a.tolerance_overrides = {
        {"peft", 1e-5, 1e-5,
         "PEFT builds FourierFT's ΔW in float32 inside a float64 layer (dense spectrum and ifft2 in float32, cast "
         "back): relative error ~1e-7 of ΔW, so of every output and gradient; 1e-5 covers it at the checks' "
         "magnitudes while a wrong index or phase stays O(1)"},
    };
    a.notes = {"not the identity at PEFT's default init (init_weights=False: spectrum ~ N(0, 1))",
               "the generic checks' rank sets n_frequency (ΔW then has rank at most 2n)",
               "PEFT 0.21.2 computes ΔW in float32 whatever the layer's dtype (FourierFTLayer.get_delta_weight)"};
    a.layer_types = {"Linear", "Conv1D"};
    return a;
  }();
  return info;
}

}  // namespace gg
