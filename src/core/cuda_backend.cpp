// The cuda half of the registry (one line per adapter with kernels) and the backend's availability.
#include "core/cuda_backend.hpp"

#include <map>

#include "core/cuda/kernels.hpp"
#include "core/errors.hpp"

namespace gg {

const TorchImpl& lora_cuda();
const TorchImpl& dora_cuda();
const TorchImpl& weight_lora_cuda();
const TorchImpl& my_lora_cuda();
const TorchImpl& kasa_cuda();

namespace {
const std::map<std::string, const TorchImpl*>& table() {
  static const std::map<std::string, const TorchImpl*> t = {
      {"lora", &lora_cuda()},
      {"dora", &dora_cuda()},
      {"weight_lora", &weight_lora_cuda()},
      {"my_lora", &my_lora_cuda()},
      {"kasa", &kasa_cuda()},
  };
  return t;
}
}  // namespace

std::string cuda_unavailable_reason() {
  const char* why = nullptr;
  if (cuda::device_count(&why) > 0) return "";
  return std::string("no CUDA device visible (") + (why ? why : "unknown") + ")";
}

bool has_cuda_impl(const AdapterInfo& info) { return table().count(info.name) > 0; }

const TorchImpl& cuda_impl(const AdapterInfo& info) {
  const auto it = table().find(info.name);
  if (it == table().end())
    throw NotImplemented("not implemented: " + info.name + " (cuda): no fused kernels for this adapter yet");
  return *it->second;
}

}  // namespace gg
