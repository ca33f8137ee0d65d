// Dense host tensors for the reference path: a logical shape plus row-major Eigen storage.
// No torch here: the Eigen reference and the finite-difference core compile without ATen (DESIGN.md §5).
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gg {

using Shape = std::vector<int64_t>;

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Storage convention: a tensor of logical shape (s0, ..., sk) is held as a (s0*...*s(k-1)) x sk matrix;
// 1-D tensors are 1 x n row vectors and scalars are 1 x 1.
inline std::pair<int64_t, int64_t> storage_dims(const Shape& shape) {
  if (shape.empty()) return {1, 1};
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, shape.back()};
}

inline int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::string shape_str(const Shape& shape);

// Named tensors of one adapter call: frozen ones ("weight", "bias", shared bases) and trainable ones.
template <class T>
using TensorMap = std::map<std::string, Mat<T>>;

template <class T>
struct Grads {
  Mat<T> dx;                  // (N, d_in)
  TensorMap<T> dparams;       // one entry per trainable tensor, same storage as the parameter
};

}  // namespace gg
