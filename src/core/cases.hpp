// Seeded, non-degenerate inputs for an adapter call: every factor drawn away from zero so that each term of the
// backward is exercised (numerics policy, DESIGN.md §4). Deterministic across platforms: own RNG transforms, not
// std::normal_distribution (whose output is implementation-defined).
#pragma once
#include <cstdint>
#include <random>

#include "core/registry.hpp"

namespace gg {

class SeededRng {
 public:
  explicit SeededRng(uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal();                                                                // Box–Muller
 private:
  std::mt19937_64 engine_;
};

template <class T>
struct AdapterCase {
  Dims dims;
  HyperParams hp;   // resolved
  Mat<T> x;         // (N, d_in)
  TensorMap<T> tensors;
};

// x ~ N(0,1); matrices ~ N(0,1)/sqrt(fan); vectors and scalars ~ ±U(0.5, 1.5) (gates and magnitudes away from 0).
AdapterCase<double> make_case(const AdapterInfo& info, const Dims& dims, const HyperParams& given, int64_t n_rows,
                              uint64_t seed);

template <class T>
AdapterCase<T> cast_case(const AdapterCase<double>& c);

}  // namespace gg
