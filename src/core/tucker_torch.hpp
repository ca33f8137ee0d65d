// The Tucker form of tucker.hpp on LibTorch: the same maths as einsums over the core viewed as (r, r, K).
#pragma once
#include <ATen/ATen.h>

namespace gg::tucker {

inline at::Tensor core3(const at::Tensor& core) {  // (r, r·K) -> (r, r, K)
  return core.reshape({core.size(0), core.size(0), core.size(1) / core.size(0)});
}

// M (P, Q·K) from core (r, r·K), a (r, P), b (r, Q).
inline at::Tensor rebuild(const at::Tensor& core, const at::Tensor& a, const at::Tensor& b) {
  return at::einsum("ijk,ip,jq->pqk", {core3(core), a, b}).reshape({a.size(1), -1});
}

struct TorchGrads {
  at::Tensor dcore, da, db;
};

inline TorchGrads backward(const at::Tensor& dM, const at::Tensor& core, const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor C = core3(core);
  const at::Tensor dM3 = dM.reshape({a.size(1), b.size(1), C.size(2)});  // (P, Q, K)
  return {at::einsum("pqk,ip,jq->ijk", {dM3, a, b}).reshape(core.sizes()),
          at::einsum("pqk,ijk,jq->ip", {dM3, C, b}), at::einsum("pqk,ijk,ip->jq", {dM3, C, a})};
}

}  // namespace gg::tucker
