// gradguard._C: the C++ core as seen from Python. Built with torch's own pybind11 (torch/extension.h) so tensors
// cross zero-copy; results cross as JSON text (one serialisation, checkers/result_json.hpp).
#include <algorithm>
#include <torch/extension.h>

#include "checkers/adapter_harness.hpp"
#include "checkers/result_json.hpp"
#include "checkers/tolerance.hpp"
#include "checkers/torch_harness.hpp"
#include "core/errors.hpp"
#include "core/safetensors.hpp"
#include "core/cuda_backend.hpp"
#include "core/torch_backend.hpp"

namespace py = pybind11;
using namespace gg;

void bind_flow(py::module_& m);  // checkers/graph_walk + src/python/bind_flow.cpp

namespace {

HyperParams to_hyper(const py::dict& d) {
  HyperParams hp;
  for (auto [k, v] : d) {
    const std::string key = py::str(k);
    if (py::isinstance<py::bool_>(v)) hp[key] = v.cast<bool>() ? 1.0 : 0.0;
    else if (py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)) hp[key] = v.cast<double>();
    else throw InputError(key, "a number or a bool", std::string(py::str(py::type::of(v).attr("__name__"))));
  }
  return hp;
}

py::dict from_hyper(const AdapterInfo& info, const HyperParams& hp) {
  py::dict d;
  for (const auto& spec : info.hyper) {
    const double v = hp.at(spec.name);
    if (spec.kind == HyperParamSpec::Kind::flag) d[py::str(spec.name)] = v != 0.0;
    else if (spec.kind == HyperParamSpec::Kind::integer || spec.kind == HyperParamSpec::Kind::derived)
      d[py::str(spec.name)] = static_cast<int64_t>(v);
    else d[py::str(spec.name)] = v;
  }
  return d;
}

py::object json_to_py(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

Mat<double> to_mat(const at::Tensor& t, const Shape& logical, const std::string& what) {
  if (Shape(t.sizes().begin(), t.sizes().end()) != logical)
    throw InputError(what, "shape " + shape_str(logical), shape_str(Shape(t.sizes().begin(), t.sizes().end())));
  const at::Tensor d = t.detach().to(at::kDouble).contiguous().cpu();
  auto [rows, cols] = storage_dims(logical);
  return Eigen::Map<const Mat<double>>(d.data_ptr<double>(), rows, cols);
}

at::Tensor to_tensor(const Mat<double>& m, const Shape& shape) {
  return torch::from_blob(const_cast<double*>(m.data()), {m.size()}, torch::kDouble).clone().reshape(shape);
}

at::Tensor to_tensor(const std::vector<double>& v, const Shape& shape) {
  return torch::tensor(v, torch::kDouble).reshape(shape);
}

TorchTensors to_torch_tensors(const py::dict& d) {
  TorchTensors t;
  for (auto [k, v] : d) t[py::str(k)] = v.cast<at::Tensor>();
  return t;
}

// A case handed in from Python (x, tensors as torch tensors of any float dtype) in the reference's float64 storage.
AdapterCase<double> case_from_python(const AdapterInfo& info, const at::Tensor& x, const py::dict& tensors,
                                     const py::dict& hp) {
  TorchTensors t;
  for (auto& [k, v] : to_torch_tensors(tensors)) t[k] = v.detach().to(torch::kDouble).cpu();
  const at::Tensor xd = x.detach().to(torch::kDouble).cpu();
  if (xd.dim() != 2) throw InputError("x", "a 2-D tensor (N, d_in)", shape_str(Shape(x.sizes().begin(), x.sizes().end())));
  AdapterCase<double> c;
  c.dims = dims_from_weight(t);
  c.hp = resolve_hyper(info, c.dims, to_hyper(hp));
  validate_torch_call(info, xd, t, c.hp);
  c.x = to_mat(xd, {xd.size(0), xd.size(1)}, "x");
  for (const auto* spec : info.present_tensors(c.hp))
    c.tensors[spec->name] = to_mat(t.at(spec->name), spec->shape(c.dims, c.hp), "tensors['" + spec->name + "']");
  return c;
}

py::dict run_to_python(const AdapterInfo& info, const AdapterCase<double>& c, const BackendRun& run) {
  py::dict out;
  out["y"] = to_tensor(run.at("y"), {c.x.rows(), c.dims.d_out});
  out["dx"] = to_tensor(run.at("dx"), {c.x.rows(), c.dims.d_in});
  for (const auto* spec : info.trainable(c.hp))
    out[py::str("d " + spec->name)] = to_tensor(run.at("d " + spec->name), spec->shape(c.dims, c.hp));
  return out;
}

std::vector<double> flat(const at::Tensor& t) {
  const at::Tensor d = t.detach().to(at::kDouble).contiguous().cpu();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "gradguard native core: registry, Eigen reference, LibTorch backend, checkers";
  static py::exception<InputError> input_error(m, "InputError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(input_error.ptr(), e.what());
    } catch (const NotImplemented& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    }
  });

  m.def("adapters", &adapter_names, "Names of every registered adapter, in registration order.");
  m.def("info", [](const std::string& name) { return json_to_py(to_json(find_adapter(name))); }, py::arg("name"));
  m.def("resolve_hyper", [](const std::string& name, int64_t d_in, int64_t d_out, const py::dict& hp) {
    const auto& info = find_adapter(name);
    return from_hyper(info, resolve_hyper(info, {d_in, d_out}, to_hyper(hp)));
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("hp"));
  m.def("rank_hyper", [](const std::string& name, int64_t d_in, int64_t d_out, int64_t r) {
    const auto& info = find_adapter(name);
    // Only the names rank_hyper sets, typed as the registry declares them; not validated here, since the caller
    // overlays its own values (validation happens where the case is resolved).
    py::dict d;
    for (const auto& [key, value] : rank_hyper(info, {d_in, d_out}, r)) {
      const auto spec = std::find_if(info.hyper.begin(), info.hyper.end(), [&](const auto& h) { return h.name == key; });
      const auto kind = spec == info.hyper.end() ? HyperParamSpec::Kind::real : spec->kind;
      if (kind == HyperParamSpec::Kind::flag) d[py::str(key)] = value != 0.0;
      else if (kind == HyperParamSpec::Kind::real) d[py::str(key)] = value;
      else d[py::str(key)] = static_cast<int64_t>(value);
    }
    return d;
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("r"));
  m.def("check_dims", [](const std::string& name, int64_t d_in, int64_t d_out) {
    const Dims d = check_dims(find_adapter(name), {d_in, d_out});
    return py::make_tuple(d.d_in, d.d_out);
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"),
     "(d_in, d_out) a generic check runs the adapter at for this requested shape (RoAd needs an even d_out).");
  m.def("known_peft_defect", [](const std::string& name, const std::string& tensor, const py::dict& hp) -> py::object {
    const auto& info = find_adapter(name);
    const PeftDefect* d = known_peft_defect(info, tensor, to_hyper(hp));
    return d ? py::object(py::str(d->reason)) : py::none();
  }, py::arg("name"), py::arg("tensor"), py::arg("hp"));
  m.def("scaling", [](const std::string& name, int64_t d_in, int64_t d_out, const py::dict& hp) {
    const auto& info = find_adapter(name);
    return info.scaling(resolve_hyper(info, {d_in, d_out}, to_hyper(hp)));
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("hp"));
  m.def("tensor_shapes", [](const std::string& name, int64_t d_in, int64_t d_out, const py::dict& hp) {
    const auto& info = find_adapter(name);
    return tensor_shapes(info, {d_in, d_out}, resolve_hyper(info, {d_in, d_out}, to_hyper(hp)));
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("hp"));
  m.def("cost", [](const std::string& name, int64_t n, int64_t d_in, int64_t d_out, const py::dict& hp) {
    const auto& info = find_adapter(name);
    const HyperParams h = resolve_hyper(info, {d_in, d_out}, to_hyper(hp));
    const Cost f = info.forward_cost(n, {d_in, d_out}, h), b = info.backward_cost(n, {d_in, d_out}, h);
    py::dict d;
    d["forward_flops"] = f.flops; d["forward_bytes"] = f.bytes;
    d["backward_flops"] = b.flops; d["backward_bytes"] = b.bytes;
    return d;
  }, py::arg("name"), py::arg("n"), py::arg("d_in"), py::arg("d_out"), py::arg("hp"));

  m.def("make_case", [](const std::string& name, int64_t d_in, int64_t d_out, int64_t n_rows, uint64_t seed,
                        const py::dict& hp) {
    const auto& info = find_adapter(name);
    const AdapterCase<double> c = make_case(info, {d_in, d_out}, to_hyper(hp), n_rows, seed);
    py::dict tensors;
    for (const auto* spec : info.present_tensors(c.hp))
      tensors[py::str(spec->name)] = to_tensor(c.tensors.at(spec->name), spec->shape(c.dims, c.hp));
    py::dict out;
    out["x"] = to_tensor(c.x, {n_rows, d_in});
    out["dy"] = to_tensor(make_upstream(c, seed), {n_rows, d_out});
    out["tensors"] = tensors;
    out["hp"] = from_hyper(info, c.hp);
    return out;
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("n_rows"), py::arg("seed"), py::arg("hp"),
     "A seeded, non-degenerate float64 case: x, dy, every tensor, the resolved hyper-parameters.");

  m.def("run_backend", [](const std::string& name, const std::string& backend, const std::string& dtype,
                          const at::Tensor& x, const py::dict& tensors, const at::Tensor& dy, const py::dict& hp,
                          bool naive) {
    const auto& info = find_adapter(name);
    const AdapterCase<double> c = case_from_python(info, x, tensors, hp);
    const Mat<double> dym = to_mat(dy, {c.x.rows(), c.dims.d_out}, "dy");
    if (backend != "eigen" && backend != "torch" && backend != "cuda")
      throw InputError("backend", "'eigen', 'torch' or 'cuda'", "'" + backend + "'");
    if (backend == "eigen" && naive)
      throw InputError("naive", "False for the eigen backend (naive runs are torch autograd)", "True");
    BackendRun run;
    {
      py::gil_scoped_release release;  // the autograd engine must not run under the GIL
      run = backend == "eigen" ? run_eigen(info, c, dtype, dym) : run_torch(info, c, dtype, dym, naive, backend);
    }
    return run_to_python(info, c, run);
  }, py::arg("name"), py::arg("backend"), py::arg("dtype"), py::arg("x"), py::arg("tensors"), py::arg("dy"),
     py::arg("hp"), py::arg("naive") = false,
     "Forward and backward of one backend: dict with y, dx and 'd <tensor>' as float64 tensors.");

  m.def("gradcheck", [](const std::string& name, int64_t d_in, int64_t d_out, const std::string& backend,
                        const std::string& mode, uint64_t seed, int64_t n_rows, const py::dict& hp, bool four_point) {
    const auto& info = find_adapter(name);
    const AdapterCase<double> c = make_case(info, {d_in, d_out}, to_hyper(hp), n_rows, seed);
    GradcheckOptions o = policy_options(info, parse_gradcheck_mode(mode), seed);
    o.four_point = four_point;
    Differentiable f;
    if (backend == "eigen") f = eigen_differentiable(info, c);
    else if (backend == "torch" || backend == "cuda") f = torch_differentiable(info, c, backend);
    else throw InputError("backend", "'eigen', 'torch' or 'cuda' for gradcheck (finite differences run in float64)", "'" + backend + "'");
    py::gil_scoped_release release;
    const auto r = gradcheck(f, o);
    py::gil_scoped_acquire acquire;
    return json_to_py(to_json(r));
  }, py::arg("name"), py::arg("d_in"), py::arg("d_out"), py::arg("backend"), py::arg("mode"), py::arg("seed"),
     py::arg("n_rows"), py::arg("hp"), py::arg("four_point") = false);

  m.def("gradcheck_callable", [](const std::vector<std::string>& names, const std::vector<at::Tensor>& values,
                                 py::function forward, py::function vjp, const std::string& mode, uint64_t seed,
                                 double eps, double atol, double rtol, int projections, bool four_point) {
    // Python callables take and return lists of float64 tensors; the finite-difference logic stays in C++.
    Differentiable f;
    for (size_t i = 0; i < names.size(); ++i)
      f.inputs.push_back({names[i], Shape(values[i].sizes().begin(), values[i].sizes().end()), flat(values[i])});
    auto to_list = [](const std::vector<FlatTensor>& in) {
      py::list l;
      for (const auto& t : in) l.append(to_tensor(t.values, t.shape));
      return l;
    };
    f.forward = [&](const std::vector<FlatTensor>& in) { return flat(forward(to_list(in)).cast<at::Tensor>()); };
    f.vjp = [&](const std::vector<FlatTensor>& in, const std::vector<double>& dy) {
      py::list grads = vjp(to_list(in), torch::tensor(dy, torch::kDouble));
      std::vector<std::vector<double>> out;
      for (auto g : grads) out.push_back(flat(g.cast<at::Tensor>()));
      return out;
    };
    GradcheckOptions o;
    o.mode = parse_gradcheck_mode(mode);
    o.seed = seed; o.eps = eps; o.atol = atol; o.rtol = rtol; o.projections = projections; o.four_point = four_point;
    return json_to_py(to_json(gradcheck(f, o)));
  }, py::arg("names"), py::arg("values"), py::arg("forward"), py::arg("vjp"), py::arg("mode"), py::arg("seed"),
     py::arg("eps"), py::arg("atol"), py::arg("rtol"), py::arg("projections") = 2, py::arg("four_point") = false);

  m.def("compare_to_reference", [](const std::string& tensor, const at::Tensor& ref, const at::Tensor& test,
                                   std::optional<at::Tensor> naive, double k, double atol, double rtol) {
    if (ref.sizes() != test.sizes())
      throw InputError("test '" + tensor + "'", "shape " + shape_str(Shape(ref.sizes().begin(), ref.sizes().end())),
                       shape_str(Shape(test.sizes().begin(), test.sizes().end())));
    return json_to_py(to_json(compare_to_reference(tensor, flat(ref), flat(test), naive ? flat(*naive) : std::vector<double>{}, k, atol, rtol)));
  }, py::arg("tensor"), py::arg("ref"), py::arg("test"), py::arg("naive"), py::arg("k"), py::arg("atol"), py::arg("rtol"));

  m.def("policy", [](const std::string& dtype) {
    py::dict d;
    d["fd_eps"] = tolerance::fd_eps; d["fd_atol"] = tolerance::fd_atol; d["fd_rtol"] = tolerance::fd_rtol;
    d["f64_atol"] = tolerance::f64_atol; d["f64_rtol"] = tolerance::f64_rtol;
    d["k"] = tolerance::low_precision_k; d["atol"] = tolerance::low_precision_atol(dtype);
    d["cases"] = tolerance::low_precision_cases;
    return d;
  }, py::arg("dtype") = "float32", "The numerics policy of DESIGN.md §4 (checkers/tolerance.hpp).");

  m.def("adapter_apply", [](const std::string& name, const at::Tensor& x, const py::dict& tensors, const py::dict& hp,
                            const std::string& backend) {
    const auto& info = find_adapter(name);
    const TorchTensors t = to_torch_tensors(tensors);
    return adapter_apply(info, x, t, resolve_hyper(info, dims_from_weight(t), to_hyper(hp)), backend);
  }, py::arg("name"), py::arg("x"), py::arg("tensors"), py::arg("hp"), py::arg("backend") = "torch",
     "Autograd-aware adapter op: y = adapter(x) for x (..., d_in); backward by the backend's analytic formulas.");

  m.def("adapter_forward_naive", [](const std::string& name, const at::Tensor& x, const py::dict& tensors, const py::dict& hp) {
    const auto& info = find_adapter(name);
    const TorchTensors t = to_torch_tensors(tensors);
    return adapter_forward_naive(info, x, t, resolve_hyper(info, dims_from_weight(t), to_hyper(hp)));
  }, py::arg("name"), py::arg("x"), py::arg("tensors"), py::arg("hp"),
     "The torch backend's composite forward, differentiable by autograd: the naive same-precision baseline.");

  m.def("cuda_status", []() {
    py::dict d;
    d["unavailable_reason"] = cuda_unavailable_reason();
    py::list with_kernels;
    for (const auto* info : registry())
      if (has_cuda_impl(*info)) with_kernels.append(info->name);
    d["adapters"] = with_kernels;
    return d;
  }, "The cuda backend: why it is unavailable ('' when usable) and which adapters have kernels in this build.");

  m.def("read_safetensors", [](const std::string& path) {
    const SafetensorsFile f = read_safetensors(path);
    py::dict tensors;
    for (const auto& [k, v] : f.tensors) tensors[py::str(k)] = to_tensor(v.values, v.shape);
    return py::make_tuple(f.metadata, tensors);
  }, py::arg("path"), "The strict C++ safetensors reader (float64 tensors, metadata).");

  bind_flow(m);
}
