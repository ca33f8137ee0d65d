// SHiRA (PEFT ShiraConfig, shira Linear around nn.Linear), float64/float32 reference with the analytic backward.
//   K fixed entries (p_k, q_k) of the weight grid (shira_indices, frozen positions), values v (K) trainable:
//   ΔW[p_k, q_k] = v_k, every other entry 0 (PEFT's sparse_coo_tensor; K = r (d_in + d_out))
//   Y = X (W + ΔW)ᵀ + b      i.e. Y[:, p_k] += v_k X[:, q_k]
// Backward:  dv_k = Σ_n dY[n, p_k] X[n, q_k];  dX = dY W,  dX[:, q_k] += v_k dY[:, p_k]
#pragma once
#include "core/registry.hpp"

namespace gg::shira {

// (row, col) of entry k: positions are validated whole numbers before any call reaches here.
template <class T>
std::pair<int64_t, int64_t> entry(const Mat<T>& positions, int64_t k) {
  return {static_cast<int64_t>(positions(0, k)), static_cast<int64_t>(positions(1, k))};
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&) {
  const Mat<T>& pos = t.at("shira_indices");
  const Mat<T>& v = t.at("shira_weight");
  Mat<T> y = x * t.at("weight").transpose();
  for (int64_t k = 0; k < v.cols(); ++k) {
    const auto [p, q] = entry(pos, k);
    y.col(p) += v(0, k) * x.col(q);
  }
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&, const Mat<T>& dy) {
  const Mat<T>& pos = t.at("shira_indices");
  const Mat<T>& v = t.at("shira_weight");
  Grads<T> g;
  g.dx = dy * t.at("weight");
  Mat<T> dv(1, v.cols());
  for (int64_t k = 0; k < v.cols(); ++k) {
    const auto [p, q] = entry(pos, k);
    dv(0, k) = dy.col(p).dot(x.col(q));
    g.dx.col(q) += v(0, k) * dy.col(p);
  }
  g.dparams["shira_weight"] = std::move(dv);
  return g;
}

}  // namespace gg::shira
