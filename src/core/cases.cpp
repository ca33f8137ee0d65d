#include "core/cases.hpp"

#include <cmath>
#include <numbers>
#include <set>

#include "core/errors.hpp"

namespace gg {

double SeededRng::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// n distinct entries of the (d_out, d_in) grid, in row-major order (Floyd's sampling: n draws, no grid-sized table).
static Mat<double> random_positions(const Dims& dims, int64_t n, SeededRng& rng) {
  const int64_t grid = dims.d_out * dims.d_in;
  if (n > grid) throw InputError("positions", "at most d_out * d_in = " + std::to_string(grid) + " entries", std::to_string(n));
  std::set<int64_t> chosen;
  for (int64_t j = grid - n; j < grid; ++j) {
    const auto t = std::min(j, static_cast<int64_t>(rng.uniform() * double(j + 1)));
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  Mat<double> m(2, n);
  int64_t k = 0;
  for (const int64_t p : chosen) {
    m(0, k) = double(p / dims.d_in);
    m(1, k) = double(p % dims.d_in);
    ++k;
  }
  return m;
}

AdapterCase<double> make_case(const AdapterInfo& info, const Dims& dims, const HyperParams& given, int64_t n_rows,
                              uint64_t seed) {
  if (n_rows <= 0) throw InputError("n_rows", "a positive integer", std::to_string(n_rows));
  AdapterCase<double> c;
  c.dims = dims;
  c.hp = resolve_hyper(info, dims, given);
  SeededRng rng(seed);
  c.x = Mat<double>(n_rows, dims.d_in);
  for (int64_t i = 0; i < c.x.size(); ++i) c.x.data()[i] = rng.normal();
  for (const auto* spec : info.present_tensors(c.hp)) {
    const Shape shape = spec->shape(dims, c.hp);
    auto [rows, cols] = storage_dims(shape);
    Mat<double> m(rows, cols);
    if (spec->kind == TensorKind::positions) {
      m = random_positions(dims, cols, rng);
    } else if (shape.size() >= 2) {
      const double scale = 1.0 / std::sqrt(static_cast<double>(shape.back()));
      for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = rng.normal() * scale;
    } else {
      for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = (rng.uniform() < 0.5 ? -1.0 : 1.0) * (0.5 + rng.uniform());
    }
    c.tensors[spec->name] = std::move(m);
  }
  return c;
}

template <class T>
AdapterCase<T> cast_case(const AdapterCase<double>& c) {
  AdapterCase<T> out{c.dims, c.hp, c.x.template cast<T>(), {}};
  for (const auto& [name, m] : c.tensors) out.tensors[name] = m.template cast<T>();
  return out;
}

template AdapterCase<float> cast_case<float>(const AdapterCase<double>&);
template AdapterCase<double> cast_case<double>(const AdapterCase<double>&);

}  // namespace gg
