// `conv_kernel`: gradguard's own hyper-parameter for adapters whose PEFT form on a convolution depends on the channel
// count rather than the lowered width (gradguard/layers.py lowers a convolution to a Linear with d_in = in_channels ·
// kernel volume, columns channel-major). Read off the layer by the bridge; 1 for a Linear. One spec, accessor and
// check for every adapter that has it (IA3's per-channel input form, LoKr's channel factorization, the Tucker form).
#pragma once
#include <string>

#include "core/errors.hpp"
#include "core/registry.hpp"

namespace gg::conv {

// `what`: how the adapter uses it, appended to the shared description.
inline HyperParamSpec kernel_hyper(const std::string& what) {
  return {"conv_kernel", 1, HyperParamSpec::Kind::integer,
          "not PEFT's: the kernel volume of a convolution lowered to this Linear (d_in = in_channels · conv_kernel; " +
              what + "); 1 for a Linear"};
}

inline int64_t kernel(const HyperParams& hp) { return static_cast<int64_t>(hp.at("conv_kernel")); }

inline void validate_kernel(const Dims& dims, const HyperParams& hp) {
  const double k = hp.at("conv_kernel");
  if (k < 1 || dims.d_in % static_cast<int64_t>(k) != 0)
    throw InputError("conv_kernel", "a kernel volume >= 1 that divides d_in = " + std::to_string(dims.d_in),
                     std::to_string(static_cast<int64_t>(k)));
}

}  // namespace gg::conv
