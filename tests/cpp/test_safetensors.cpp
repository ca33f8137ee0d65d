// The strict safetensors reader: a valid file round-trips; every kind of corruption is an InputError naming the
// file and the offset, never a crash or a partial read.
#include <gtest/gtest.h>

#include <cstring>

#include "core/errors.hpp"
#include "core/safetensors.hpp"

namespace gg {
namespace {

std::string header_len(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

std::string make_file(const std::string& header, const std::string& data) { return header_len(header.size()) + header + data; }

std::string doubles(std::initializer_list<double> v) {
  std::string s(v.size() * 8, '\0');
  size_t i = 0;
  for (double d : v) std::memcpy(&s[8 * i++], &d, 8);
  return s;
}

const std::string kHeader =
    R"({"__metadata__":{"gradguard_fixture_version":"1"},"a":{"dtype":"F64","shape":[2,2],"data_offsets":[0,32]}})";

TEST(Safetensors, ValidFileRoundTrips) {
  const auto f = parse_safetensors(make_file(kHeader, doubles({1, 2, 3, 4})), "ok.safetensors");
  EXPECT_EQ(f.metadata.at("gradguard_fixture_version"), "1");
  EXPECT_EQ(f.tensors.at("a").shape, (Shape{2, 2}));
  EXPECT_EQ(f.tensors.at("a").values, (std::vector<double>{1, 2, 3, 4}));
}

TEST(Safetensors, CorruptionIsAClearError) {
  const std::string good = make_file(kHeader, doubles({1, 2, 3, 4}));
  struct Case {
    const char* label;
    std::string bytes;
    std::vector<std::string> contains;
  };
  const std::vector<Case> cases = {
      {"empty", "", {"bad.safetensors", "offset 0", "truncated"}},
      {"truncated length", good.substr(0, 5), {"offset 0", "5 bytes"}},
      {"header length past end", header_len(1 << 20) + "{}", {"offset 8", "truncated or corrupt"}},
      {"truncated data", good.substr(0, good.size() - 8), {"tensor 'a'", "truncated"}},
      {"bad json", make_file(R"({"a": [1, 2,)", ""), {"valid JSON", "bytes 8 to", "byte offset"}},
      {"not an object", make_file("[1,2]", ""), {"JSON object"}},
      {"unknown dtype", make_file(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", "x"), {"'a'", "dtype", "Q8"}},
      {"size mismatch", make_file(R"({"a":{"dtype":"F64","shape":[3],"data_offsets":[0,16]}})", doubles({1, 2})),
       {"'a'", "24 bytes", "16 bytes"}},
      {"missing field", make_file(R"({"a":{"dtype":"F64","shape":[1]}})", doubles({1})), {"'a'", "data_offsets"}},
      {"negative dim", make_file(R"({"a":{"dtype":"F64","shape":[-1],"data_offsets":[0,8]}})", doubles({1})), {"non-negative"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    try {
      parse_safetensors(c.bytes, "bad.safetensors");
      ADD_FAILURE() << "accepted a corrupt file";
    } catch (const InputError& e) {
      for (const auto& s : c.contains) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
    }
  }
}

TEST(Safetensors, MissingFileNamesThePath) {
  try {
    read_safetensors("/nonexistent/golden.safetensors");
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/golden.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace gg
