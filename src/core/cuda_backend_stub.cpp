// The cuda backend of a build without nvcc (GG_CUDA=OFF): every entry point says why it is missing.
#include "core/cuda_backend.hpp"

#include "core/errors.hpp"

namespace gg {

std::string cuda_unavailable_reason() {
  return "built without CUDA (GG_CUDA=OFF: nvcc was not found when CMake configured this build)";
}

const TorchImpl& cuda_impl(const AdapterInfo& info) {
  throw NotImplemented("not implemented: " + info.name + " (cuda): " + cuda_unavailable_reason());
}

bool has_cuda_impl(const AdapterInfo&) { return false; }

}  // namespace gg
