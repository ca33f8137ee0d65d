#include "core/torch_backend.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <mutex>
#include <vector>

#include "core/cuda_backend.hpp"
#include "core/errors.hpp"

namespace gg {

// The torch half of the registry: every adapter of src/adapters/registry.list with a torch.cpp (CMake writes
// gg_adapters/torch.inc, one GG_ADAPTER(name) per line; <name>_torch() is defined in that torch.cpp).
#define GG_ADAPTER(name) const TorchImpl& name##_torch();
#include "gg_adapters/torch.inc"
#undef GG_ADAPTER

const TorchImpl& torch_impl(const AdapterInfo& info) {
  static const std::map<std::string, const TorchImpl*> table = {
#define GG_ADAPTER(name) {#name, &name##_torch()},
#include "gg_adapters/torch.inc"
#undef GG_ADAPTER
  };
  auto it = table.find(info.name);
  if (it == table.end()) throw NotImplemented("not implemented: " + info.name + " (torch)");
  return *it->second;
}

at::Tensor naive_forward(const TorchImpl& impl, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp) {
  return impl.naive_forward ? impl.naive_forward(x, t, hp) : impl.forward(x, t, hp, nullptr);
}

const TorchImpl& backend_impl(const AdapterInfo& info, const std::string& backend) {
  if (backend == "torch") return torch_impl(info);
  if (backend == "cuda") return cuda_impl(info);
  throw InputError("backend", "'torch' or 'cuda'", "'" + backend + "'");
}

at::Tensor tall_tn(const at::Tensor& a, const at::Tensor& b) { return at::mm(b.t(), a).t().contiguous(); }

at::Tensor thin_mm(const at::Tensor& m, const at::Tensor& f) { return at::mm(m, f.t().contiguous().t()); }

static std::string shape_of(const at::Tensor& t) { return shape_str(Shape(t.sizes().begin(), t.sizes().end())); }

Dims dims_from_weight(const TorchTensors& t) {
  auto weight = t.find("weight");
  if (weight == t.end() || !weight->second.defined())
    throw InputError("tensors['weight']", "the base weight (d_out, d_in)", "nothing");
  if (weight->second.dim() != 2) throw InputError("tensors['weight']", "a 2-D tensor (d_out, d_in)", shape_of(weight->second));
  return {weight->second.size(1), weight->second.size(0)};
}

static void validate_backend_dtype(const at::Tensor& x, const std::string& backend) {
  const auto st = x.scalar_type();
  const bool wide = st == at::kFloat || st == at::kDouble;
  const bool half = st == at::kBFloat16 || st == at::kHalf;
  if (backend == "cuda") {
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw NotImplemented("the cuda backend is unavailable: " + why);
    if (!x.is_cuda()) throw InputError("x", "a CUDA tensor for the cuda backend", "a tensor on " + x.device().str());
    if (!wide && !half)
      throw InputError("x", "dtype float64, float32, bfloat16 or float16 on the cuda backend", std::string(c10::toString(st)));
    return;
  }
  if (backend == "naive" && half && x.is_cuda()) return;
  if (!wide) throw InputError("x", "dtype float32 or float64 on the torch backend", std::string(c10::toString(st)));
}

namespace {

// Index tables are frozen and come back on every call (each layer's table once per forward of a training step):
// the tables already checked are remembered by their storage, offset, layout and version counter, so a step pays the
// host copy and the sort once per table, and any write to a table (which bumps its version) has it checked again.
// A weak reference pins the storage's identity: while an entry lives, a freed table's storage cannot be reused by a
// new tensor, so a new table is always checked.
struct CheckedTable {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
  int64_t offset, version;
  std::vector<int64_t> sizes, strides;
  at::ScalarType dtype;
  Dims dims;

  bool same(const at::Tensor& v, const Dims& d) const {
    const auto alive = storage.lock();
    return alive.get() == v.storage().unsafeGetStorageImpl() && offset == v.storage_offset() &&
           version == v._version() && dtype == v.scalar_type() && sizes == v.sizes().vec() &&
           strides == v.strides().vec() && dims.d_in == d.d_in && dims.d_out == d.d_out;
  }
};

std::mutex checked_tables_mutex;
std::vector<CheckedTable> checked_tables;  // small: one entry per adapted layer that has a table
constexpr size_t kMaxCheckedTables = 4096;

void validate_positions_once(const std::string& name, const Dims& dims, const at::Tensor& v) {
  if (!v.has_storage()) {  // e.g. a meta tensor: nothing to read, and nothing the op could compute with either
    throw InputError("tensors['" + name + "']", "a tensor with data", "one without storage");
  }
  {
    std::lock_guard<std::mutex> lock(checked_tables_mutex);
    for (const auto& entry : checked_tables)
      if (entry.same(v, dims)) return;
  }
  const at::Tensor host = v.to(at::kCPU, at::kDouble).contiguous();
  validate_positions(name, dims, host.data_ptr<double>(), host.size(1));
  std::lock_guard<std::mutex> lock(checked_tables_mutex);
  std::erase_if(checked_tables, [](const CheckedTable& e) { return e.storage.expired(); });
  if (checked_tables.size() >= kMaxCheckedTables) checked_tables.erase(checked_tables.begin());
  checked_tables.push_back({v.storage().getWeakStorageImpl(), v.storage_offset(), v._version(), v.sizes().vec(),
                            v.strides().vec(), v.scalar_type(), dims});
}

}  // namespace

Dims validate_torch_call(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp,
                         const std::string& backend) {
  const Dims dims = dims_from_weight(t);
  auto weight = t.find("weight");
  if (!x.defined() || x.dim() < 1 || x.size(-1) != dims.d_in)
    throw InputError("x", "shape (..., " + std::to_string(dims.d_in) + ") to match weight " + shape_of(weight->second),
                     x.defined() ? shape_of(x) : "undefined");
  validate_backend_dtype(x, backend);
  for (const auto* spec : info.present_tensors(hp)) {
    auto it = t.find(spec->name);
    const Shape expected = spec->shape(dims, hp);
    if (it == t.end() || !it->second.defined())
      throw InputError("tensors['" + spec->name + "']", "a tensor of shape " + shape_str(expected), "nothing");
    const at::Tensor& v = it->second;
    if (Shape(v.sizes().begin(), v.sizes().end()) != expected)
      throw InputError("tensors['" + spec->name + "']", "shape " + shape_str(expected), shape_of(v));
    const bool positions = spec->kind == TensorKind::positions;
    // Positions may keep an integer dtype (PEFT's int32/int64; any integral type is range-checked below): they are
    // read as indices, never differentiated.
    if (v.scalar_type() != x.scalar_type() && !(positions && at::isIntegralType(v.scalar_type(), false)))
      throw InputError("tensors['" + spec->name + "']", std::string("dtype ") + c10::toString(x.scalar_type()) +
                           " (the dtype of x)" + (positions ? " or an integer dtype" : ""),
                       c10::toString(v.scalar_type()));
    if (v.device() != x.device())
      throw InputError("tensors['" + spec->name + "']", "device " + x.device().str() + " (the device of x)", v.device().str());
    if (positions) validate_positions_once(spec->name, dims, v);
  }
  return dims;
}

namespace {

// Names and hyper-parameters travel through the autograd context as IValues; the adapter's own intermediates
// (TorchImpl::forward's `saved`) are saved after the inputs, under names kept in "saved_names".
struct AdapterFunction : public torch::autograd::Function<AdapterFunction> {
  static constexpr size_t kNonTensorArgs = 4;  // name, backend, tensor_names, hp_values

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const std::string& name, const std::string& backend,
                            const std::vector<std::string>& tensor_names, const std::vector<double>& hp_values,
                            const at::Tensor& x, at::TensorList tensors) {
    const AdapterInfo& info = find_adapter(name);
    const HyperParams hp = unpack_hyper(info, hp_values);
    TorchTensors t;
    for (size_t i = 0; i < tensors.size(); ++i) t[tensor_names[i]] = tensors[i];
    TorchTensors intermediates;
    at::Tensor y = backend_impl(info, backend).forward(x, t, hp, &intermediates);
    std::vector<std::string> saved_names;
    std::vector<at::Tensor> saved = {x};
    saved.insert(saved.end(), tensors.begin(), tensors.end());
    for (auto& [k, v] : intermediates) {
      saved_names.push_back(k);
      saved.push_back(v);
    }
    ctx->saved_data["name"] = name;
    ctx->saved_data["backend"] = backend;
    ctx->saved_data["tensor_names"] = tensor_names;
    ctx->saved_data["saved_names"] = saved_names;
    ctx->saved_data["hp"] = hp_values;
    ctx->save_for_backward(saved);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const AdapterInfo& info = find_adapter(ctx->saved_data["name"].toStringRef());
    const auto names = ctx->saved_data["tensor_names"].toList();
    const auto saved_names = ctx->saved_data["saved_names"].toList();
    const HyperParams hp = unpack_hyper(info, ctx->saved_data["hp"].toDoubleVector());
    const auto saved = ctx->get_saved_variables();
    TorchTensors t, intermediates;
    GradRequest request;
    // needs_input_grad counts tensor inputs only (the graph's edges): x is 0, the tensors follow.
    request.dx = ctx->needs_input_grad(0);
    request.all_params = false;
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& n = names.get(i).toStringRef();
      t[n] = saved[i + 1];
      if (ctx->needs_input_grad(1 + i)) request.params.insert(n);
    }
    for (size_t i = 0; i < saved_names.size(); ++i) intermediates[saved_names.get(i).toStringRef()] = saved[1 + names.size() + i];
    const TorchImpl& impl = backend_impl(info, ctx->saved_data["backend"].toStringRef());
    TorchGrads g = impl.backward(saved[0], t, hp, grad_outputs[0].contiguous(), intermediates, request);
    // One entry per forward argument: the non-tensor arguments, x, then each tensor of the list.
    torch::autograd::variable_list out(kNonTensorArgs);
    out.push_back(request.dx ? g.dx : at::Tensor());
    for (size_t i = 0; i < names.size(); ++i) {
      auto it = g.dparams.find(names.get(i).toStringRef());
      out.push_back(it == g.dparams.end() ? at::Tensor() : it->second);
    }
    return out;
  }

  static HyperParams unpack_hyper(const AdapterInfo& info, const std::vector<double>& values) {
    HyperParams hp;
    for (size_t i = 0; i < info.hyper.size(); ++i) hp[info.hyper[i].name] = values.at(i);
    return hp;
  }
};

}  // namespace

at::Tensor adapter_apply(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t, const HyperParams& hp,
                         const std::string& backend) {
  backend_impl(info, backend);  // unknown backend or missing implementation: say so before validating tensors
  const Dims dims = validate_torch_call(info, x, t, hp, backend);
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  for (const auto* spec : info.present_tensors(hp)) {
    names.push_back(spec->name);
    tensors.push_back(t.at(spec->name));
  }
  std::vector<double> hp_values;
  for (const auto& spec : info.hyper) hp_values.push_back(hp.at(spec.name));
  const auto lead = x.sizes().vec();
  const at::Tensor x2 = x.reshape({-1, dims.d_in});  // (N, d_in); a view when x allows it
  at::Tensor y = AdapterFunction::apply(info.name, backend, names, hp_values, x2, at::TensorList(tensors));
  std::vector<int64_t> out_shape(lead.begin(), lead.end() - 1);
  out_shape.push_back(dims.d_out);
  return y.reshape(out_shape);
}

at::Tensor adapter_forward_naive(const AdapterInfo& info, const at::Tensor& x, const TorchTensors& t,
                                 const HyperParams& hp) {
  const Dims dims = validate_torch_call(info, x, t, hp, "naive");
  const auto lead = x.sizes().vec();
  at::Tensor y = naive_forward(torch_impl(info), x.reshape({-1, dims.d_in}), t, hp);
  std::vector<int64_t> out_shape(lead.begin(), lead.end() - 1);
  out_shape.push_back(dims.d_out);
  return y.reshape(out_shape);
}

}  // namespace gg
