// A strict reader for safetensors files (goldens written by fixtures/make_goldens.py). Every defect — truncation,
// bad header JSON, offsets out of range, unknown dtype, shape/size mismatch — is an InputError naming the file and
// the byte offset, never a crash or a silent partial read.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace gg {

struct SafeTensor {
  std::string dtype;            // as stored: F64, F32, ...
  Shape shape;
  std::vector<double> values;   // converted to float64, row-major
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // the "__metadata__" table
  std::map<std::string, SafeTensor> tensors;
};

SafetensorsFile read_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& path_for_errors);

}  // namespace gg
