// DoRA, float64/float32 reference with the analytic backward written out.
//   V = W + s·B A            (d_out, d_in)   the adapted weight
//   n = ‖V‖ per output row   (d_out)         PEFT detaches n (paper §4.3); exact_gradient=1 differentiates it
//   g = m / n                (d_out)
//   P = X Vᵀ = X Wᵀ + s·(X Aᵀ) Bᵀ            computed without forming V
//   Y = g ⊙ P + b            PEFT's form: Y_base + (g−1)⊙(Y_base − b) + g⊙s·X Aᵀ Bᵀ, algebraically the same
#pragma once
#include "core/lowrank.hpp"

namespace gg::dora {

// Row norms of V = W + s·B A. Forming V costs one d_out×d_in pass, which PEFT pays too; the N-sized work stays
// low-rank.
template <class T>
Mat<T> adapted_weight(const TensorMap<T>& t, T s) {
  return t.at("weight") + s * (t.at("lora_B") * t.at("lora_A"));
}

// n = ‖V‖ per row, or the detached constant when the caller supplies it (see AdapterInfo::detached).
template <class T>
Mat<T> row_norms(const TensorMap<T>& t, const Mat<T>& V) {
  const auto given = t.find("weight_norm");
  return given != t.end() ? given->second : Mat<T>(V.rowwise().norm().transpose());
}

template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> V = adapted_weight(t, s);                                      // (d_out, d_in)
  const Mat<T> n = row_norms(t, V);                                           // (1, d_out)
  const Mat<T> g = t.at("lora_magnitude_vector").cwiseQuotient(n);            // (1, d_out)
  const Mat<T> S = x * t.at("lora_A").transpose();                            // (N, r)
  Mat<T> P = x * t.at("weight").transpose();                                  // (N, d_out)
  P.noalias() += s * (S * t.at("lora_B").transpose());
  Mat<T> y = P.array().rowwise() * g.row(0).array();
  y.rowwise() += t.at("bias").row(0);
  return y;
}

template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  const Mat<T>& W = t.at("weight");
  const Mat<T>& A = t.at("lora_A");
  const Mat<T>& B = t.at("lora_B");
  const Mat<T>& m = t.at("lora_magnitude_vector");  // (1, d_out)
  const T s = static_cast<T>(lowrank::scaling(hp));
  const Mat<T> V = adapted_weight(t, s);
  const Mat<T> n = row_norms(t, V);                 // (1, d_out)
  const Mat<T> g = m.cwiseQuotient(n);              // (1, d_out)
  const Mat<T> S = x * A.transpose();               // (N, r)
  Mat<T> P = x * W.transpose();                     // (N, d_out)
  P.noalias() += s * (S * B.transpose());

  const Mat<T> dP = dy.array().rowwise() * g.row(0).array();   // (N, d_out)
  const Mat<T> dg = (dy.array() * P.array()).colwise().sum();  // (1, d_out)
  const Mat<T> dL = s * dP;                                    // (N, d_out) gradient of S Bᵀ
  const Mat<T> dS = dL * B;                                    // (N, r)
  Grads<T> out;
  out.dparams["lora_magnitude_vector"] = dg.cwiseQuotient(n);  // dm = dg / n
  Mat<T> dB = dL.transpose() * S;                              // (d_out, r)
  Mat<T> dA = dS.transpose() * x;                              // (r, d_in)
  if (hp.at("exact_gradient") != 0.0) {
    // n depends on A and B: dn = −dg·m/n², dV = diag(dn/n)·V, then V = W + s·B A gives dB += s·dV Aᵀ, dA += s·Bᵀ dV.
    const Mat<T> dn_over_n = -(dg.array() * m.array() / (n.array() * n.array() * n.array())).matrix();  // (1, d_out)
    const Mat<T> dV = V.array().colwise() * dn_over_n.row(0).transpose().array();                     // (d_out, d_in)
    dB.noalias() += s * (dV * A.transpose());
    dA.noalias() += s * (B.transpose() * dV);
  }
  out.dparams["lora_B"] = std::move(dB);
  out.dparams["lora_A"] = std::move(dA);
  out.dx = dP * W;           // (N, d_in) base term, scaled by g
  out.dx.noalias() += dS * A;  // adapter term
  return out;
}

}  // namespace gg::dora
