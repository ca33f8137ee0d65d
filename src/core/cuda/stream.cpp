// ATen's current CUDA stream for the kernel launchers: kernels run in order with the GEMMs around them.
#include <c10/cuda/CUDAStream.h>

#include "core/cuda/aten_glue.hpp"

namespace gg::cuda {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace gg::cuda
