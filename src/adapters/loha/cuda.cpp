// LoHa on the cuda backend: its torch composition (torch.cpp), unchanged. Every N-sized step there is already one
// cuBLAS GEMM on the rank-r² factors (ΔW is never formed outside the Tucker form), with no elementwise pass over the
// activations left to fuse; what the cuda backend adds is bfloat16/float16, whose numerics the GPU check holds to
// the float64 reference like every other kernel (tests/python/test_cuda.py).
#include "core/torch_backend.hpp"

namespace gg {

const TorchImpl& loha_torch();
const TorchImpl& loha_cuda() { return loha_torch(); }

}  // namespace gg
