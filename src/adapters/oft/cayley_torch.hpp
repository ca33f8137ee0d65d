// The exact Cayley transform on batches of H x H skew matrices (B, H, H) and its backward, for OFT's exact mode and
// BOFT (formulas in oft/eigen.hpp).
#pragma once
#include <ATen/ATen.h>

namespace gg::oft {

inline at::Tensor eye_like(const at::Tensor& S) { return at::eye(S.size(1), S.options()).expand_as(S); }

inline at::Tensor cayley(const at::Tensor& S) {  // (I − S)(I + S)^{-1}
  const at::Tensor I = eye_like(S);
  return at::linalg_solve(I + S, I - S, /*left=*/false);
}

inline at::Tensor cayley_backward(const at::Tensor& S, const at::Tensor& dR) {
  const at::Tensor I = eye_like(S);
  const at::Tensor Mt = at::linalg_inv(I + S).transpose(1, 2);
  return -at::bmm(dR, Mt) - at::bmm(at::bmm(Mt, (I - S).transpose(1, 2)), at::bmm(dR, Mt));
}

}  // namespace gg::oft
