// Float64 CPU references of gradguard's own CUDA kernels, beside them (kernels.hpp), for the kernel tests. Each also
// returns Σ|terms| of every reduction, from which the tests derive the standard forward error bound of a sum
// (|error| ≤ γ·Σ|terms|) instead of a tuned tolerance.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace gg::cuda::reference {

using Vec = std::vector<double>;

struct Reduced {
  Vec scaled;   // the elementwise output (dS or dP)
  Vec sum;      // the reduction
  Vec abs_sum;  // Σ|terms| of each reduced element
};

// dS = U ⊙ c, colsum_j = Σ_n U[n,j]·S[n,j]; U, S (n, r).
inline Reduced gated_rank_grad(const Vec& U, const Vec& S, const Vec& c, int64_t n, int64_t r) {
  Reduced out{Vec(n * r), Vec(r, 0.0), Vec(r, 0.0)};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < r; ++j) {
      out.scaled[i * r + j] = U[i * r + j] * c[j];
      out.sum[j] += U[i * r + j] * S[i * r + j];
      out.abs_sum[j] += std::abs(U[i * r + j] * S[i * r + j]);
    }
  return out;
}

// dP = dY ⊙ g, colsum_i = Σ_n dY[n,i]·P[n,i]; dY, P (n, d).
inline Reduced column_dot_scale(const Vec& dY, const Vec& P, const Vec& g, int64_t n, int64_t d) {
  return gated_rank_grad(dY, P, g, n, d);  // the same maths over d columns instead of r
}

struct RowNorms {
  Vec sumsq;   // ‖W_i‖² (its own Σ|terms|)
  Vec WA;      // W Aᵀ (d_out, r)
  Vec WA_abs;  // Σ_k |W[i,k]·A[j,k]|
};

inline RowNorms row_norms_project(const Vec& W, const Vec& A, int64_t d_out, int64_t d_in, int64_t r) {
  RowNorms out{Vec(d_out, 0.0), Vec(d_out * r, 0.0), Vec(d_out * r, 0.0)};
  for (int64_t i = 0; i < d_out; ++i)
    for (int64_t k = 0; k < d_in; ++k) {
      const double w = W[i * d_in + k];
      out.sumsq[i] += w * w;
      for (int64_t j = 0; j < r; ++j) {
        out.WA[i * r + j] += w * A[j * d_in + k];
        out.WA_abs[i * r + j] += std::abs(w * A[j * d_in + k]);
      }
    }
  return out;
}

}  // namespace gg::cuda::reference
