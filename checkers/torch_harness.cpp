#include "checkers/torch_harness.hpp"

#include <ATen/ATen.h>
#include <memory>
#include <torch/autograd.h>

#include "core/errors.hpp"
#include "core/cuda_backend.hpp"
#include "core/torch_backend.hpp"

namespace gg {

namespace {

// Where a backend's tensors live: the cuda backend runs on the current CUDA device, the torch backend on the CPU.
at::Device device_for(const std::string& backend) { return backend == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU); }

at::Tensor to_torch(const std::vector<double>& values, const Shape& shape, at::ScalarType dtype,
                    at::Device device = at::kCPU) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).reshape(shape).to(device, dtype);
}

at::Tensor to_torch(const Mat<double>& m, const Shape& shape, at::ScalarType dtype, at::Device device = at::kCPU) {
  return to_torch(std::vector<double>(m.data(), m.data() + m.size()), shape, dtype, device);
}

std::vector<double> to_flat(const at::Tensor& t) {
  const at::Tensor d = t.detach().to(at::kDouble).contiguous().cpu();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

at::ScalarType parse_dtype(const std::string& dtype, const std::string& backend) {
  if (dtype == "float64") return at::kDouble;
  if (dtype == "float32") return at::kFloat;
  if (backend == "cuda" && dtype == "bfloat16") return at::kBFloat16;
  if (backend == "cuda" && dtype == "float16") return at::kHalf;
  throw InputError("dtype", backend == "cuda" ? "float64, float32, bfloat16 or float16 for the cuda backend"
                                              : "float64 or float32 for the torch backend", "'" + dtype + "'");
}

void require_backend(const std::string& backend) {
  if (backend != "torch" && backend != "cuda") throw InputError("backend", "'torch' or 'cuda'", "'" + backend + "'");
  if (backend == "cuda") {
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw NotImplemented("the cuda backend is unavailable: " + why);
  }
}

}  // namespace

TorchTensors case_tensors(const AdapterInfo& info, const AdapterCase<double>& c, at::ScalarType dtype,
                          at::Device device) {
  TorchTensors t;
  for (const auto* spec : info.present_tensors(c.hp))
    t[spec->name] = to_torch(c.tensors.at(spec->name), spec->shape(c.dims, c.hp), dtype, device);
  for (const auto& spec : info.detached)
    if (spec.exists(c.hp) && c.tensors.count(spec.name))
      t[spec.name] = to_torch(c.tensors.at(spec.name), spec.shape(c.dims, c.hp), dtype, device);
  return t;
}


Differentiable torch_differentiable(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& backend) {
  require_backend(backend);
  return impl_differentiable(info, c, backend_impl(info, backend), device_for(backend));
}

Differentiable impl_differentiable(const AdapterInfo& info, const AdapterCase<double>& c, const TorchImpl& impl,
                                   at::Device dev) {
  Differentiable f;
  f.inputs = case_inputs(info, c);
  auto work = std::make_shared<AdapterCase<double>>(c);
  if (info.derive_detached) info.derive_detached(work->tensors, work->hp);  // held fixed at the base point
  f.forward = [&info, &impl, work, dev](const std::vector<FlatTensor>& in) {
    assign_inputs(info, in, *work);
    at::NoGradGuard no_grad;
    return to_flat(impl.forward(to_torch(work->x, {work->x.rows(), work->dims.d_in}, at::kDouble, dev),
                                case_tensors(info, *work, at::kDouble, dev), work->hp, nullptr));
  };
  f.vjp = [&info, &impl, work, dev](const std::vector<FlatTensor>& in, const std::vector<double>& dy) {
    assign_inputs(info, in, *work);
    at::NoGradGuard no_grad;
    // The path a live model takes: forward saves its intermediates, backward reuses them.
    const at::Tensor x = to_torch(work->x, {work->x.rows(), work->dims.d_in}, at::kDouble, dev);
    const TorchTensors t = case_tensors(info, *work, at::kDouble, dev);
    TorchTensors saved;
    impl.forward(x, t, work->hp, &saved);
    const TorchGrads g = impl.backward(x, t, work->hp, to_torch(dy, {work->x.rows(), work->dims.d_out}, at::kDouble, dev),
                                       saved, GradRequest{});
    std::vector<std::vector<double>> out = {to_flat(g.dx)};
    for (const auto* spec : info.trainable(work->hp)) {
      const auto it = g.dparams.find(spec->name);
      if (it == g.dparams.end()) throw NotImplemented(info.name + " backward (torch) returned no gradient for " + spec->name);
      out.push_back(to_flat(it->second));
    }
    return out;
  };
  return f;
}

BackendRun run_torch(const AdapterInfo& info, const AdapterCase<double>& c, const std::string& dtype,
                     const Mat<double>& dy, bool naive, const std::string& backend) {
  require_backend(backend);
  // The naive baseline is always the torch backend's composite forward under autograd, on the backend's device.
  return run_impl(info, c, parse_dtype(dtype, backend), dy, naive ? torch_impl(info) : backend_impl(info, backend),
                  naive, device_for(backend));
}

BackendRun run_impl(const AdapterInfo& info, const AdapterCase<double>& c, at::ScalarType st, const Mat<double>& dy,
                    const TorchImpl& impl, bool naive, at::Device dev) {
  at::Tensor x = to_torch(c.x, {c.x.rows(), c.dims.d_in}, st, dev);
  TorchTensors t = case_tensors(info, c, st, dev);
  const at::Tensor dyt = to_torch(dy, {c.x.rows(), c.dims.d_out}, st, dev);
  BackendRun run;
  if (!naive) {
    at::NoGradGuard no_grad;
    TorchTensors saved;
    run["y"] = to_flat(impl.forward(x, t, c.hp, &saved));
    const TorchGrads g = impl.backward(x, t, c.hp, dyt, saved, GradRequest{});
    run["dx"] = to_flat(g.dx);
    for (const auto* spec : info.trainable(c.hp)) run["d " + spec->name] = to_flat(g.dparams.at(spec->name));
    return run;
  }
  std::vector<at::Tensor> leaves = {x.requires_grad_(true)};
  for (const auto* spec : info.trainable(c.hp)) leaves.push_back(t[spec->name].requires_grad_(true));
  const at::Tensor y = naive_forward(impl, x, t, c.hp);
  const auto grads = torch::autograd::grad({y}, leaves, {dyt});
  run["y"] = to_flat(y);
  run["dx"] = to_flat(grads[0]);
  const auto trainable = info.trainable(c.hp);
  for (size_t k = 0; k < trainable.size(); ++k) run["d " + trainable[k]->name] = to_flat(grads[k + 1]);
  return run;
}

}  // namespace gg
