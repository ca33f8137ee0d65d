#include "checkers/gradcheck.hpp"

#include <cmath>

#include "core/cases.hpp"
#include "core/errors.hpp"

namespace gg {

std::string to_string(GradcheckMode mode) { return mode == GradcheckMode::fast ? "fast" : "full"; }

GradcheckMode parse_gradcheck_mode(const std::string& mode) {
  if (mode == "fast") return GradcheckMode::fast;
  if (mode == "full") return GradcheckMode::full;
  throw InputError("mode", "'fast' or 'full'", "'" + mode + "'");
}

namespace {

std::string index_str(const Shape& shape, int64_t flat) {
  if (shape.empty()) return "";
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  std::string s = "[";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

void require_finite(const std::vector<double>& values, const std::string& what) {
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw InputError(what, "finite values (gradcheck needs a finite point)",
                       std::string(std::isnan(values[i]) ? "NaN" : "Inf") + " at flat index " + std::to_string(i));
}

class Checker {
 public:
  Checker(const Differentiable& f, const GradcheckOptions& o) : f_(f), o_(o), point_(f.inputs) {
    for (const auto& t : f.inputs) {
      if (static_cast<int64_t>(t.values.size()) != numel(t.shape))
        throw InputError("inputs['" + t.name + "']", std::to_string(numel(t.shape)) + " values for shape " + shape_str(t.shape),
                         std::to_string(t.values.size()));
      require_finite(t.values, "inputs['" + t.name + "']");
    }
    y0_ = eval();
    require_finite(y0_, "forward output");
  }

  GradcheckResult run() {
    GradcheckResult r;
    r.mode = o_.mode;
    r.options = o_;
    for (size_t k = 0; k < point_.size(); ++k) {
      TensorGradcheck t;
      t.name = point_[k].name;
      t.shape = point_[k].shape;
      if (o_.mode == GradcheckMode::fast) check_projections(k, t);
      r.tensors.push_back(t);
    }
    if (o_.mode == GradcheckMode::full) check_jacobian(r.tensors);
    for (const auto& t : r.tensors) r.ok = r.ok && t.ok;
    r.forward_evals = forward_evals_;
    r.backward_evals = backward_evals_;
    return r;
  }

 private:
  std::vector<double> eval() {
    ++forward_evals_;
    return f_.forward(point_);
  }

  std::vector<std::vector<double>> vjp(const std::vector<double>& dy) {
    ++backward_evals_;
    auto g = f_.vjp(point_, dy);
    if (g.size() != point_.size())
      throw InputError("vjp", std::to_string(point_.size()) + " gradients (one per input)", std::to_string(g.size()));
    for (size_t k = 0; k < g.size(); ++k)
      if (g[k].size() != point_[k].values.size())
        throw InputError("vjp gradient of '" + point_[k].name + "'", std::to_string(point_[k].values.size()) + " values",
                         std::to_string(g[k].size()));
    return g;
  }

  // Directional derivative d/dt f(x + t·u) of input k by central differences (2- or 4-point stencil).
  std::vector<double> directional(size_t k, const std::vector<double>& u) {
    const double h = o_.eps;
    auto shifted = [&](double t) {
      auto& v = point_[k].values;
      const std::vector<double> saved = v;
      for (size_t i = 0; i < v.size(); ++i) v[i] += t * u[i];
      auto y = eval();
      v = saved;
      return y;
    };
    const auto yp = shifted(h), ym = shifted(-h);
    std::vector<double> d(yp.size());
    if (!o_.four_point) {
      for (size_t i = 0; i < d.size(); ++i) d[i] = (yp[i] - ym[i]) / (2 * h);
    } else {
      const auto yp2 = shifted(2 * h), ym2 = shifted(-2 * h);
      for (size_t i = 0; i < d.size(); ++i) d[i] = (-yp2[i] + 8 * yp[i] - 8 * ym[i] + ym2[i]) / (12 * h);
    }
    return d;
  }

  void record(TensorGradcheck& t, double analytic, double numeric, const std::string& where) {
    const double abs_err = std::abs(analytic - numeric);
    const double allowed = o_.atol + o_.rtol * std::abs(numeric);
    const double used = abs_err / allowed;
    const double rel = abs_err / std::max(std::abs(numeric), 1e-300);
    ++t.checks;
    // A NaN error (a NaN gradient) is the largest error of all: std::max would drop it and report 0.
    const auto worse = [](double current, double e) {
      return std::isnan(current) || std::isnan(e) ? NAN : std::max(current, e);
    };
    t.max_rel_err = worse(t.max_rel_err, abs_err == 0 ? 0.0 : rel);
    if (t.checks == 1 || used > t.budget_used || std::isnan(used)) {
      t.budget_used = std::isnan(used) ? INFINITY : used;
      t.worst = where;
      t.analytic_at_worst = analytic;
      t.numeric_at_worst = numeric;
    }
    t.max_abs_err = worse(t.max_abs_err, abs_err);
    if (!(abs_err <= allowed)) t.ok = false;  // written so that NaN fails
  }

  void check_projections(size_t k, TensorGradcheck& t) {
    SeededRng rng(o_.seed * 1000003 + k);
    for (int p = 0; p < o_.projections; ++p) {
      std::vector<double> u(point_[k].values.size()), v(y0_.size());
      for (auto& e : u) e = rng.normal();
      for (auto& e : v) e = rng.normal();
      const auto d = directional(k, u);  // J u
      double numeric = 0, analytic = 0;
      for (size_t i = 0; i < d.size(); ++i) numeric += v[i] * d[i];
      const auto g = vjp(v);             // Jᵀ v
      for (size_t i = 0; i < u.size(); ++i) analytic += g[k][i] * u[i];
      record(t, analytic, numeric, "projection " + std::to_string(p));
    }
  }

  void check_jacobian(std::vector<TensorGradcheck>& tensors) {
    int64_t n_in = 0;
    for (const auto& t : point_) n_in += static_cast<int64_t>(t.values.size());
    const int64_t n_out = static_cast<int64_t>(y0_.size());
    if (n_in * n_out > o_.max_full_entries)
      throw InputError("mode", "'fast' for a Jacobian this large (full mode is limited to " +
                                   std::to_string(o_.max_full_entries) + " entries)",
                       std::to_string(n_out) + " outputs × " + std::to_string(n_in) + " inputs");
    // Analytic Jacobian rows: one backward per output element.
    std::vector<std::vector<std::vector<double>>> rows(n_out);
    std::vector<double> e(n_out, 0.0);
    for (int64_t i = 0; i < n_out; ++i) {
      e[i] = 1.0;
      rows[i] = vjp(e);
      e[i] = 0.0;
    }
    // Numeric Jacobian columns: one central difference per input element.
    for (size_t k = 0; k < point_.size(); ++k) {
      std::vector<double> u(point_[k].values.size(), 0.0);
      for (size_t j = 0; j < u.size(); ++j) {
        u[j] = 1.0;
        const auto col = directional(k, u);
        u[j] = 0.0;
        for (int64_t i = 0; i < n_out; ++i)
          record(tensors[k], rows[i][k][j], col[i],
                 "d out[" + std::to_string(i) + "] / d " + point_[k].name + index_str(point_[k].shape, j));
      }
    }
  }

  const Differentiable& f_;
  GradcheckOptions o_;
  std::vector<FlatTensor> point_;
  std::vector<double> y0_;
  int64_t forward_evals_ = 0;
  int64_t backward_evals_ = 0;
};

}  // namespace

GradcheckResult gradcheck(const Differentiable& f, const GradcheckOptions& options) {
  if (!(options.eps > 0)) throw InputError("eps", "a positive step", std::to_string(options.eps));
  if (!(options.atol >= 0) || !(options.rtol >= 0))
    throw InputError("atol/rtol", "non-negative tolerances", std::to_string(options.atol) + "/" + std::to_string(options.rtol));
  if (options.projections < 1) throw InputError("projections", "an integer >= 1", std::to_string(options.projections));
  if (!f.forward || !f.vjp) throw InputError("function", "a forward and a vjp", "an empty callable");
  return Checker(f, options).run();
}

}  // namespace gg
