#include "core/registry.hpp"

#include <algorithm>
#include <cmath>

#include "core/errors.hpp"

namespace gg {

// The adapters of src/adapters/registry.list, in its order: CMake writes gg_adapters/core.inc with one
// GG_ADAPTER(name) per line; each name's <name>_info() is defined in src/adapters/<name>/entry.cpp.
#define GG_ADAPTER(name) const AdapterInfo& name##_info();
#include "gg_adapters/core.inc"
#undef GG_ADAPTER

const std::vector<const AdapterInfo*>& registry() {
  static const std::vector<const AdapterInfo*> all = {
#define GG_ADAPTER(name) &name##_info(),
#include "gg_adapters/core.inc"
#undef GG_ADAPTER
  };
  return all;
}

std::vector<std::string> adapter_names() {
  std::vector<std::string> names;
  for (const auto* info : registry()) names.push_back(info->name);
  return names;
}

const PeftDefect* known_peft_defect(const AdapterInfo& info, const std::string& tensor, const HyperParams& hp) {
  HyperParams full = hp;  // a partial set (a user's config) takes the defaults for the rest, as resolve_hyper would
  for (const auto& h : info.hyper) full.emplace(h.name, h.default_value);
  for (const auto& d : info.peft_defects)
    if (d.tensor == tensor && d.applies(full)) return &d;
  return nullptr;
}

HyperParams rank_hyper(const AdapterInfo& info, const Dims& dims, int64_t r) {
  HyperParams hp;
  if (!info.rank_param.empty()) hp[info.rank_param] = static_cast<double>(r);
  if (info.shape_hyper) info.shape_hyper(dims, r, hp);
  return hp;
}

Dims check_dims(const AdapterInfo& info, Dims dims) {
  if (info.fit_dims) info.fit_dims(dims);
  return dims;
}

void validate_positions(const std::string& name, const Dims& dims, const double* values, int64_t n) {
  const std::string arg = "tensors['" + name + "']";
  const std::string expected = "whole-number positions: row indices in [0, d_out = " + std::to_string(dims.d_out) +
                               ") in row 0, column indices in [0, d_in = " + std::to_string(dims.d_in) +
                               ") in row 1, no (row, col) entry twice";
  std::vector<std::pair<int64_t, int64_t>> entries(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const double row = values[k], col = values[n + k];
    const auto bad = [&](double v, int64_t bound) { return !(v >= 0 && v < double(bound) && v == std::floor(v)); };
    if (bad(row, dims.d_out) || bad(col, dims.d_in))
      throw InputError(arg, expected, "(" + std::to_string(row) + ", " + std::to_string(col) + ") at column " + std::to_string(k));
    entries[size_t(k)] = {static_cast<int64_t>(row), static_cast<int64_t>(col)};
  }
  std::vector<std::pair<int64_t, int64_t>> sorted = entries;
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end())
    throw InputError(arg, expected, "entry (" + std::to_string(dup->first) + ", " + std::to_string(dup->second) + ") twice");
}

static std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& item : items) s += (s.empty() ? "" : ", ") + item;
  return s;
}

const AdapterInfo& find_adapter(const std::string& name) {
  for (const auto* info : registry())
    if (info->name == name) return *info;
  throw InputError("adapter", "one of [" + join(adapter_names()) + "]", "'" + name + "'");
}

const TensorSpec& AdapterInfo::tensor(const std::string& tensor_name) const {
  for (const auto& spec : tensors)
    if (spec.name == tensor_name) return spec;
  throw InputError("tensor", "a tensor of adapter '" + name + "'", "'" + tensor_name + "'");
}

std::vector<const TensorSpec*> AdapterInfo::present_tensors(const HyperParams& hp) const {
  std::vector<const TensorSpec*> out;
  for (const auto& spec : tensors)
    if (spec.exists(hp)) out.push_back(&spec);
  return out;
}

std::vector<const TensorSpec*> AdapterInfo::trainable(const HyperParams& hp) const {
  std::vector<const TensorSpec*> out;
  for (const auto* spec : present_tensors(hp))
    if (spec->role == TensorRole::trainable) out.push_back(spec);
  return out;
}

bool AdapterInfo::supports(const std::string& backend, const std::string& dtype) const {
  for (const auto& b : backends)
    if (b.backend == backend) return std::find(b.dtypes.begin(), b.dtypes.end(), dtype) != b.dtypes.end();
  return false;
}

HyperParams resolve_hyper(const AdapterInfo& info, const Dims& dims, const HyperParams& given) {
  if (dims.d_in <= 0) throw InputError("d_in", "a positive integer", std::to_string(dims.d_in));
  if (dims.d_out <= 0) throw InputError("d_out", "a positive integer", std::to_string(dims.d_out));
  HyperParams hp;
  std::vector<std::string> known;
  for (const auto& spec : info.hyper) {
    hp[spec.name] = spec.default_value;
    known.push_back(spec.name);
  }
  HyperParams given_derived;
  for (const auto& [key, value] : given) {
    auto it = std::find_if(info.hyper.begin(), info.hyper.end(), [&](const auto& s) { return s.name == key; });
    if (it == info.hyper.end())
      throw InputError(key, "a hyper-parameter of '" + info.name + "': one of [" + join(known) + "]", "unknown name");
    if (!std::isfinite(value)) throw InputError(key, "a finite number", std::to_string(value));
    if ((it->kind == HyperParamSpec::Kind::integer || it->kind == HyperParamSpec::Kind::derived) && value != std::floor(value))
      throw InputError(key, "an integer", std::to_string(value));
    if (it->kind == HyperParamSpec::Kind::flag && value != 0.0 && value != 1.0)
      throw InputError(key, "a flag (0/1, false/true)", std::to_string(value));
    if (it->kind == HyperParamSpec::Kind::derived) given_derived[key] = value;
    else hp[key] = value;
  }
  if (info.validate) info.validate(dims, hp);
  if (info.derive) info.derive(dims, hp);
  // A derived value may travel back in (a resolved dict passed on), but never differ from what the layer implies.
  for (const auto& [key, value] : given_derived)
    if (hp.at(key) != value)
      throw InputError(key, std::to_string(static_cast<int64_t>(hp.at(key))) + " (derived from d_in = " +
                                std::to_string(dims.d_in) + ", d_out = " + std::to_string(dims.d_out) +
                                " and the other hyper-parameters; not settable)",
                       std::to_string(static_cast<int64_t>(value)));
  return hp;
}

std::map<std::string, Shape> tensor_shapes(const AdapterInfo& info, const Dims& dims, const HyperParams& hp) {
  std::map<std::string, Shape> shapes;
  for (const auto* spec : info.present_tensors(hp)) shapes[spec->name] = spec->shape(dims, hp);
  return shapes;
}

template <class T>
void validate_call(const AdapterInfo& info, const Dims& dims, const HyperParams& hp, const Mat<T>& x,
                   const TensorMap<T>& tensors) {
  if (x.cols() != dims.d_in)
    throw InputError("x", "shape (N, " + std::to_string(dims.d_in) + ") matching weight (d_out, d_in) = " +
                              shape_str({dims.d_out, dims.d_in}),
                     shape_str({x.rows(), x.cols()}));
  if (x.rows() <= 0) throw InputError("x", "at least one row (N >= 1)", shape_str({x.rows(), x.cols()}));
  for (const auto* spec : info.present_tensors(hp)) {
    auto it = tensors.find(spec->name);
    const Shape shape = spec->shape(dims, hp);
    if (it == tensors.end()) throw InputError("tensors['" + spec->name + "']", "a tensor of shape " + shape_str(shape), "nothing");
    auto [rows, cols] = storage_dims(shape);
    if (it->second.rows() != rows || it->second.cols() != cols)
      throw InputError("tensors['" + spec->name + "']", "shape " + shape_str(shape),
                       "storage " + shape_str({it->second.rows(), it->second.cols()}));
    if (!it->second.allFinite())
      throw InputError("tensors['" + spec->name + "']", "finite values", "NaN or Inf");
    if (spec->kind == TensorKind::positions) {
      const Mat<double> v = it->second.template cast<double>();
      validate_positions(spec->name, dims, v.data(), v.cols());
    }
  }
  if (!x.allFinite()) throw InputError("x", "finite values", "NaN or Inf");
}

template void validate_call<double>(const AdapterInfo&, const Dims&, const HyperParams&, const Mat<double>&,
                                    const TensorMap<double>&);
template void validate_call<float>(const AdapterInfo&, const Dims&, const HyperParams&, const Mat<float>&,
                                   const TensorMap<float>&);

}  // namespace gg
