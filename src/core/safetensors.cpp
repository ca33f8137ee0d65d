#include "core/safetensors.hpp"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/errors.hpp"

namespace gg {

namespace {

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  return 0;
}

double read_element(const char* p, const std::string& dtype) {
  if (dtype == "F64") { double v; std::memcpy(&v, p, 8); return v; }
  if (dtype == "F32") { float v; std::memcpy(&v, p, 4); return v; }
  if (dtype == "I64") { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
  int32_t v; std::memcpy(&v, p, 4); return v;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& path) {
  const std::string file = "file '" + path + "'";
  if (bytes.size() < 8)
    throw InputError(file, "an 8-byte header length at offset 0", "a file of " + std::to_string(bytes.size()) + " bytes (truncated)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);  // little-endian
  if (header_len > bytes.size() - 8)
    throw InputError(file, "a JSON header of " + std::to_string(header_len) + " bytes at offset 8",
                     std::to_string(bytes.size() - 8) + " bytes left (truncated or corrupt header length)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  } catch (const nlohmann::json::parse_error& e) {
    // The parser's own message may quote the offending (binary) byte; only the offset is reported.
    throw InputError(file, "valid JSON in the header (bytes 8 to " + std::to_string(8 + header_len) + ")",
                     "a JSON syntax error at byte offset " + std::to_string(8 + e.byte - 1));
  }
  if (!header.is_object()) throw InputError(file, "a JSON object header at offset 8", header.type_name());
  const size_t data_start = 8 + header_len;
  const size_t data_size = bytes.size() - data_start;
  SafetensorsFile out;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw InputError(file + " __metadata__", "an object of strings", entry.type_name());
      for (auto& [k, v] : entry.items()) out.metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    const std::string where = file + " tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw InputError(where, "an entry with dtype, shape and data_offsets", entry.dump());
    SafeTensor t;
    t.dtype = entry["dtype"].get<std::string>();
    const size_t elem = dtype_size(t.dtype);
    if (elem == 0) throw InputError(where, "dtype F64, F32, I64 or I32", t.dtype);
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw InputError(where, "non-negative integer dims", entry["shape"].dump());
      t.shape.push_back(d.get<int64_t>());
    }
    const auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      throw InputError(where, "data_offsets [begin, end]", offs.dump());
    const size_t begin = offs[0].get<size_t>(), end = offs[1].get<size_t>();
    if (begin > end || end > data_size)
      throw InputError(where, "data within the " + std::to_string(data_size) + " data bytes starting at offset " +
                                  std::to_string(data_start),
                       "bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ") (truncated file or corrupt offsets)");
    const size_t expected = static_cast<size_t>(numel(t.shape)) * elem;
    if (end - begin != expected)
      throw InputError(where, std::to_string(expected) + " bytes for shape " + shape_str(t.shape) + " " + t.dtype,
                       std::to_string(end - begin) + " bytes at offset " + std::to_string(data_start + begin));
    t.values.resize(static_cast<size_t>(numel(t.shape)));
    const char* p = bytes.data() + data_start + begin;
    for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = read_element(p + i * elem, t.dtype);
    out.tensors[name] = std::move(t);
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("file '" + path + "'", "a readable safetensors file", "it cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_safetensors(ss.str(), path);
}

}  // namespace gg
