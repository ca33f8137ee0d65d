// KaSA on LibTorch: my_lora's implementation with the gate under KaSA's name.
#include "adapters/kasa/eigen.hpp"
#include "adapters/my_lora/torch.hpp"

namespace gg {

const TorchImpl& kasa_torch() { return my_lora::torch_impl<kasa::kDiag>(); }

}  // namespace gg
