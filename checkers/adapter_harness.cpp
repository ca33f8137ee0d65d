#include "checkers/adapter_harness.hpp"

#include <memory>

#include "checkers/tolerance.hpp"
#include "core/errors.hpp"

namespace gg {

static FlatTensor flatten(const std::string& name, const Shape& shape, const Mat<double>& m) {
  return {name, shape, std::vector<double>(m.data(), m.data() + m.size())};
}

static void unflatten(const FlatTensor& t, Mat<double>& m) {
  auto [rows, cols] = storage_dims(t.shape);
  m = Eigen::Map<const Mat<double>>(t.values.data(), rows, cols);
}

std::vector<FlatTensor> case_inputs(const AdapterInfo& info, const AdapterCase<double>& c) {
  std::vector<FlatTensor> inputs = {flatten("x", {c.x.rows(), c.x.cols()}, c.x)};
  for (const auto* spec : info.trainable(c.hp))
    inputs.push_back(flatten(spec->name, spec->shape(c.dims, c.hp), c.tensors.at(spec->name)));
  return inputs;
}

void assign_inputs(const AdapterInfo& info, const std::vector<FlatTensor>& inputs, AdapterCase<double>& c) {
  unflatten(inputs[0], c.x);
  const auto trainable = info.trainable(c.hp);
  for (size_t k = 0; k < trainable.size(); ++k) unflatten(inputs[k + 1], c.tensors[trainable[k]->name]);
}

Differentiable eigen_differentiable(const AdapterInfo& info, const AdapterCase<double>& c) {
  if (!info.eigen64.forward || !info.eigen64.backward)
    throw NotImplemented("not implemented: " + info.name + " backward (eigen)");
  Differentiable f;
  f.inputs = case_inputs(info, c);
  auto work = std::make_shared<AdapterCase<double>>(c);
  if (info.derive_detached) info.derive_detached(work->tensors, work->hp);  // held fixed at the base point
  f.forward = [&info, work](const std::vector<FlatTensor>& in) {
    assign_inputs(info, in, *work);
    const Mat<double> y = info.eigen64.forward(work->x, work->tensors, work->hp);
    return std::vector<double>(y.data(), y.data() + y.size());
  };
  f.vjp = [&info, work](const std::vector<FlatTensor>& in, const std::vector<double>& dy_flat) {
    assign_inputs(info, in, *work);
    const Mat<double> dy = Eigen::Map<const Mat<double>>(dy_flat.data(), work->x.rows(), work->dims.d_out);
    Grads<double> g = info.eigen64.backward(work->x, work->tensors, work->hp, dy);
    std::vector<std::vector<double>> out = {std::vector<double>(g.dx.data(), g.dx.data() + g.dx.size())};
    for (const auto* spec : info.trainable(work->hp)) {
      const auto it = g.dparams.find(spec->name);
      if (it == g.dparams.end()) throw NotImplemented(info.name + " backward (eigen) returned no gradient for " + spec->name);
      out.emplace_back(it->second.data(), it->second.data() + it->second.size());
    }
    return out;
  };
  return f;
}

GradcheckOptions policy_options(const AdapterInfo& info, GradcheckMode mode, uint64_t seed) {
  GradcheckOptions o;
  o.mode = mode;
  o.seed = seed;
  o.eps = tolerance::fd_eps;
  o.atol = tolerance::fd_atol;
  o.rtol = tolerance::fd_rtol;
  if (const auto* over = tolerance::override_for(info, "gradcheck")) {
    o.atol = over->atol;
    o.rtol = over->rtol;
  }
  return o;
}

}  // namespace gg

namespace gg {

namespace {
template <class T>
std::vector<double> flat64(const Mat<T>& m) {
  const Mat<double> d = m.template cast<double>();
  return std::vector<double>(d.data(), d.data() + d.size());
}

template <class T>
BackendRun run_eigen_typed(const AdapterInfo& info, const EigenImpl<T>& impl, const AdapterCase<double>& c64,
                           const Mat<double>& dy) {
  if (!impl.forward || !impl.backward) throw NotImplemented("not implemented: " + info.name + " (eigen)");
  const AdapterCase<T> c = cast_case<T>(c64);
  validate_call(info, c.dims, c.hp, c.x, c.tensors);
  BackendRun run;
  run["y"] = flat64(impl.forward(c.x, c.tensors, c.hp));
  const Grads<T> g = impl.backward(c.x, c.tensors, c.hp, dy.template cast<T>());
  run["dx"] = flat64(g.dx);
  for (const auto* spec : info.trainable(c.hp)) run["d " + spec->name] = flat64(g.dparams.at(spec->name));
  return run;
}
}  // namespace

BackendRun run_eigen(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& dtype,
                     const Mat<double>& dy) {
  if (dtype == "float64") return run_eigen_typed(info, info.eigen64, c, dy);
  if (dtype == "float32") return run_eigen_typed(info, info.eigen32, c, dy);
  throw InputError("dtype", "float64 or float32 for the eigen backend", "'" + dtype + "'");
}

Mat<double> make_upstream(const AdapterCase<double>& c, uint64_t seed) {
  SeededRng rng(seed ^ 0x9e3779b97f4a7c15ULL);
  Mat<double> dy(c.x.rows(), c.dims.d_out);
  for (int64_t i = 0; i < dy.size(); ++i) dy.data()[i] = rng.normal();
  return dy;
}

BackendRun pool_runs(const std::vector<BackendRun>& runs) {
  BackendRun out;
  for (const auto& run : runs)
    for (const auto& [key, values] : run) out[key].insert(out[key].end(), values.begin(), values.end());
  return out;
}

}  // namespace gg
