// RoAd (PEFT RoadConfig, road Linear around nn.Linear), float64/float32 reference with the analytic backward.
// The output z = X Wᵀ + b (bias included) is rotated in 2-D pairs: within each group of g = group_size outputs,
// row i of the first half pairs with row i + g/2. With per-output factors f = α cos θ and s = α sin θ:
//   y_i = f_i z_i − s_i z_j,   y_j = f_j z_j + s_j z_i     (j = i + g/2)      i.e. y = f ⊙ z + s ⊙ rot(z)
// The variant says how many angles and scales there are (PEFT's _prepare_cols):
//   road_1: d_out/2 of each, shared by both rows of a pair; road_2: one per output;
//   road_4: 2 d_out: per group, the first g are the cos side (f = α₁ cos θ₁), the next g the sin side (s = α₂ sin θ₂).
// Backward:  df = Σ_n dY ⊙ z,  ds = Σ_n dY ⊙ rot(z),  dz = f ⊙ dY − rot(s ⊙ dY)  (rotᵀ = −rot),  dX = dz W;
//   then df, ds back to (θ, α) through the variant's layout.
#pragma once
#include <cmath>

#include "core/registry.hpp"

namespace gg::road {

inline int64_t variant(const HyperParams& hp) { return static_cast<int64_t>(hp.at("variant")); }
inline int64_t group(const HyperParams& hp) { return static_cast<int64_t>(hp.at("group_size")); }

// Number of angles (and of scales) for d_out outputs.
inline int64_t params(int64_t d_out, const HyperParams& hp) { return variant(hp) == 1 ? d_out / 2 : variant(hp) * d_out / 2; }

// Where output o's cos side and sin side read their (θ, α): indices into the parameter vectors.
struct Slots {
  int64_t cos_side, sin_side;
};

inline Slots slots(int64_t o, const HyperParams& hp) {
  const int64_t g = group(hp), grp = o / g, within = o % g;
  switch (variant(hp)) {
    case 1: {
      const int64_t k = grp * (g / 2) + within % (g / 2);  // both rows of a pair
      return {k, k};
    }
    case 2: return {o, o};
    default: return {grp * 2 * g + within, grp * 2 * g + g + within};
  }
}

// rot(z): within each group, first half gets −(second half), second half gets the first half.
template <class T>
Mat<T> rot(const Mat<T>& z, int64_t g) {
  Mat<T> out(z.rows(), z.cols());
  const int64_t h = g / 2;
  for (int64_t o = 0; o < z.cols(); ++o) {
    const bool first = (o % g) < h;
    out.col(o) = first ? Mat<T>(-z.col(o + h)) : Mat<T>(z.col(o - h));
  }
  return out;
}

template <class T>
void factors(const TensorMap<T>& t, const HyperParams& hp, int64_t d_out, Mat<T>& f, Mat<T>& s) {
  const Mat<T>& theta = t.at("road_theta");
  const Mat<T>& alpha = t.at("road_alpha");
  f.resize(1, d_out);
  s.resize(1, d_out);
  for (int64_t o = 0; o < d_out; ++o) {
    const Slots k = slots(o, hp);
    f(0, o) = alpha(0, k.cos_side) * std::cos(theta(0, k.cos_side));
    s(0, o) = alpha(0, k.sin_side) * std::sin(theta(0, k.sin_side));
  }
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  Mat<T> z = x * t.at("weight").transpose();
  z.rowwise() += t.at("bias").row(0);
  Mat<T> f, s;
  factors(t, hp, z.cols(), f, s);
  return (z.array().rowwise() * f.row(0).array() + rot(z, group(hp)).array().rowwise() * s.row(0).array()).matrix();
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");
  Mat<T> z = x * W.transpose();
  z.rowwise() += t.at("bias").row(0);
  const int64_t d_out = z.cols(), g = group(hp);
  Mat<T> f, s;
  factors(t, hp, d_out, f, s);
  const Mat<T> df = (dy.array() * z.array()).colwise().sum();
  const Mat<T> ds = (dy.array() * rot(z, g).array()).colwise().sum();
  const Mat<T> sdy = (dy.array().rowwise() * s.row(0).array()).matrix();
  const Mat<T> dz = (dy.array().rowwise() * f.row(0).array()).matrix() - rot(sdy, g);
  const Mat<T>& theta = t.at("road_theta");
  const Mat<T>& alpha = t.at("road_alpha");
  Mat<T> dtheta = Mat<T>::Zero(1, theta.cols()), dalpha = Mat<T>::Zero(1, alpha.cols());
  for (int64_t o = 0; o < d_out; ++o) {
    const Slots k = slots(o, hp);
    dtheta(0, k.cos_side) -= df(0, o) * alpha(0, k.cos_side) * std::sin(theta(0, k.cos_side));
    dalpha(0, k.cos_side) += df(0, o) * std::cos(theta(0, k.cos_side));
    dtheta(0, k.sin_side) += ds(0, o) * alpha(0, k.sin_side) * std::cos(theta(0, k.sin_side));
    dalpha(0, k.sin_side) += ds(0, o) * std::sin(theta(0, k.sin_side));
  }
  Grads<T> gr;
  gr.dparams["road_theta"] = std::move(dtheta);
  gr.dparams["road_alpha"] = std::move(dalpha);
  gr.dx = dz * W;
  return gr;
}

}  // namespace gg::road
