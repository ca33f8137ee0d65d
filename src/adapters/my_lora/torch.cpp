// my_lora on LibTorch (the implementation is in torch.hpp, shared with KaSA).
#include "adapters/my_lora/eigen.hpp"
#include "adapters/my_lora/torch.hpp"

namespace gg {

const TorchImpl& my_lora_torch() { return my_lora::torch_impl<my_lora::kGate>(); }

}  // namespace gg
