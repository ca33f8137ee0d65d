// The cuda half of the registry (one line per adapter with kernels) and the backend's availability.
#include "core/cuda_backend.hpp"

#include <algorithm>
#include <map>

#include "core/cuda/kernels.hpp"
#include "core/errors.hpp"

namespace gg {

// Every adapter of src/adapters/registry.list with a cuda.cpp (CMake writes gg_adapters/cuda.inc).
#define GG_ADAPTER(name) const TorchImpl& name##_cuda();
#include "gg_adapters/cuda.inc"
#undef GG_ADAPTER

namespace {
const std::map<std::string, const TorchImpl*>& table() {
  static const std::map<std::string, const TorchImpl*> t = {
#define GG_ADAPTER(name) {#name, &name##_cuda()},
#include "gg_adapters/cuda.inc"
#undef GG_ADAPTER
  };
  return t;
}
}  // namespace

std::string cuda_unavailable_reason() {
  const char* why = nullptr;
  if (cuda::device_count(&why) > 0) return "";
  return std::string("no CUDA device visible (") + (why ? why : "unknown") + ")";
}

namespace {
// A cuda.cpp counts once the registry entry declares the backend: a scaffold's stub cuda.cpp compiles in every build
// but stays out of the backend lists until its author adds the declaration.
bool declares_cuda(const AdapterInfo& info) {
  return std::any_of(info.backends.begin(), info.backends.end(), [](const auto& b) { return b.backend == "cuda"; });
}
}  // namespace

bool has_cuda_impl(const AdapterInfo& info) { return table().count(info.name) > 0 && declares_cuda(info); }

const TorchImpl& cuda_impl(const AdapterInfo& info) {
  const auto it = table().find(info.name);
  if (it == table().end())
    throw NotImplemented("not implemented: " + info.name + " (cuda): no fused kernels for this adapter yet");
  if (!declares_cuda(info))
    throw NotImplemented("not implemented: " + info.name + " (cuda): src/adapters/" + info.name +
                         "/cuda.cpp exists but the registry entry does not declare the cuda backend yet");
  return *it->second;
}

}  // namespace gg
