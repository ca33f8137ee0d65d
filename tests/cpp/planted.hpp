// Planted bugs for the gradcheck tests, applied to any Differentiable built from a registry entry: they wrap the
// vector-Jacobian product, so the same plants serve every adapter and every backend (no per-adapter test code).
#pragma once
#include <ostream>
#include <string>

#include "checkers/adapter_harness.hpp"

namespace gg::test {

enum class Plant {
  wrong_scale,       // the gradient of one tensor multiplied by 1.5 (a forgotten or doubled scaling factor)
  transposed,        // the gradient of one tensor read out transposed (a transposed factor in its formula)
  dropped_term,      // dx missing the adapter's contribution: only the base term dY·W is returned
};

// A tensor whose transpose differs in layout: 2-D with rows and cols both > 1.
inline bool transposable(const FlatTensor& t) { return t.shape.size() == 2 && t.shape[0] > 1 && t.shape[1] > 1; }

inline std::string to_string(Plant p) {
  switch (p) {
    case Plant::wrong_scale: return "wrong_scale";
    case Plant::transposed: return "transposed";
    case Plant::dropped_term: return "dropped_term";
  }
  return "?";
}

// Which input the plant corrupts (index into Differentiable::inputs).
inline size_t planted_input(const Differentiable& f, Plant p) {
  if (p == Plant::dropped_term) return 0;  // x
  // The first trainable tensor whose transpose differs in layout; without one (IA3's vector, rank-1 factors) the
  // transposed plant goes to x (N, d_in), so every adapter has a transposed gradient to catch.
  for (size_t k = 1; k < f.inputs.size(); ++k)
    if (transposable(f.inputs[k])) return k;
  return p == Plant::transposed ? 0 : 1;
}

inline Differentiable plant(Differentiable f, Plant p, const AdapterCase<double>& c) {
  const size_t k = planted_input(f, p);
  const Shape shape = f.inputs[k].shape;
  const Mat<double> W = c.tensors.at("weight");
  auto inner = f.vjp;
  f.vjp = [=](const std::vector<FlatTensor>& in, const std::vector<double>& dy) {
    auto g = inner(in, dy);
    if (p == Plant::wrong_scale) {
      for (auto& v : g[k]) v *= 1.5;
    } else if (p == Plant::transposed) {
      const Mat<double> m = Eigen::Map<const Mat<double>>(g[k].data(), shape[0], shape[1]);
      const Mat<double> t = m.transpose();  // same numel, transposed layout
      g[k].assign(t.data(), t.data() + t.size());
    } else {
      const Mat<double> dym = Eigen::Map<const Mat<double>>(dy.data(), c.x.rows(), c.dims.d_out);
      const Mat<double> base = dym * W;
      g[0].assign(base.data(), base.data() + base.size());
    }
    return g;
  };
  return f;
}

// Shapes every check runs at: aligned, odd/prime, and rank 1 (numerics policy, DESIGN.md §4).
struct ShapeCase {
  const char* label;
  int64_t n, d_in, d_out, r;
  Dims dims(const AdapterInfo& info) const { return check_dims(info, {d_in, d_out}); }  // the adapter's nearest
};
inline const ShapeCase kShapes[] = {{"aligned", 4, 8, 8, 2}, {"odd_prime", 3, 7, 5, 3}, {"rank1", 2, 5, 3, 1}};

// Hyper-parameter variants generated from the registry: defaults, then each flag flipped away from its default in
// turn; the rank (for adapters that have one) and shape_hyper's block sizes set for the shape.
inline std::vector<std::pair<std::string, HyperParams>> flag_variants(const AdapterInfo& info, const Dims& dims,
                                                                       int64_t r) {
  std::vector<std::pair<std::string, HyperParams>> out = {{"default", rank_hyper(info, dims, r)}};
  for (const auto& h : info.hyper)
    if (h.kind == HyperParamSpec::Kind::flag) {
      HyperParams hp = rank_hyper(info, dims, r);
      hp[h.name] = h.default_value != 0.0 ? 0.0 : 1.0;
      out.push_back({h.name, hp});
    }
  return out;
}

// Readable names in ctest's list (gtest would print the enum's bytes).
inline void PrintTo(Plant p, std::ostream* os) { *os << to_string(p); }

}  // namespace gg::test

namespace gg {
inline void PrintTo(GradcheckMode m, std::ostream* os) { *os << to_string(m); }
}  // namespace gg
