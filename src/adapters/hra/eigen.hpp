// HRA (PEFT HRAConfig, HRALinear around nn.Linear, apply_GS = False), float64/float32 reference with the analytic
// backward. The plain form: H is formed densely here (the torch backend reflects X instead, see torch.cpp).
//   ûᵢ = uᵢ / ‖uᵢ‖ (columns of hra_u, d_in × r),  Rᵢ = I − 2 ûᵢ ûᵢᵀ,  H = R₀ R₁ ⋯ R_{r−1}   (d_in × d_in)
//   Y = X (W H)ᵀ + b
// Backward:  dX = dY W H;  dH = Wᵀ dYᵀ X;  with Lᵢ = R₀⋯R_{i−1} and Tᵢ = R_{i+1}⋯R_{r−1}:  dRᵢ = Lᵢᵀ dH Tᵢᵀ,
//   dûᵢ = −2 (dRᵢ + dRᵢᵀ) ûᵢ,   duᵢ = (dûᵢ − ûᵢ (ûᵢ · dûᵢ)) / ‖uᵢ‖
#pragma once
#include <vector>

#include "core/registry.hpp"

namespace gg::hra {

template <class T>
std::vector<Mat<T>> reflections(const Mat<T>& u) {  // R_i, i = 0..r-1
  const int64_t d = u.rows();
  std::vector<Mat<T>> R;
  for (int64_t i = 0; i < u.cols(); ++i) {
    const Mat<T> uh = u.col(i) / u.col(i).norm();
    R.push_back(Mat<T>::Identity(d, d) - T(2) * uh * uh.transpose());
  }
  return R;
}

template <class T>
Mat<T> product(const std::vector<Mat<T>>& R, size_t from, size_t to, int64_t d) {  // R_from ⋯ R_{to-1}
  Mat<T> P = Mat<T>::Identity(d, d);
  for (size_t i = from; i < to; ++i) P = P * R[i];
  return P;
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&) {
  const Mat<T>& u = t.at("hra_u");
  const auto R = reflections(u);
  Mat<T> y = x * (t.at("weight") * product(R, 0, R.size(), u.rows())).transpose();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams&, const Mat<T>& dy) {
  const Mat<T>& u = t.at("hra_u");
  const Mat<T>& W = t.at("weight");
  const int64_t d = u.rows();
  const auto R = reflections(u);
  const Mat<T> H = product(R, 0, R.size(), d);
  const Mat<T> dH = W.transpose() * (dy.transpose() * x);  // (d_in, d_in)
  Mat<T> du(u.rows(), u.cols());
  for (size_t i = 0; i < R.size(); ++i) {
    const Mat<T> dR = product(R, 0, i, d).transpose() * dH * product(R, i + 1, R.size(), d).transpose();
    const T n = u.col(i).norm();
    const Mat<T> uh = u.col(i) / n;
    const Mat<T> duh = T(-2) * (dR + dR.transpose()) * uh;
    du.col(i) = (duh - uh * (uh.transpose() * duh)) / n;
  }
  Grads<T> g;
  g.dparams["hra_u"] = du;
  g.dx = dy * (W * H);
  return g;
}

}  // namespace gg::hra
