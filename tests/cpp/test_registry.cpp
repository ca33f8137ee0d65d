// Invariants every registry entry must satisfy, and the identities every LoRA-style adapter must hold, checked
// generically on the Eigen reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "checkers/adapter_harness.hpp"
#include "planted.hpp"

namespace gg {
namespace {

class Registry : public ::testing::TestWithParam<std::string> {};

TEST_P(Registry, EntryIsComplete) {
  const AdapterInfo& info = find_adapter(GetParam());
  EXPECT_FALSE(info.peft_type.empty());
  EXPECT_FALSE(info.summary.empty());
  EXPECT_TRUE(info.scaling && info.forward_cost && info.backward_cost);  // validate is optional
  if (!info.rank_param.empty()) {  // the rank names an integer hyper-parameter
    const auto it = std::find_if(info.hyper.begin(), info.hyper.end(),
                                 [&](const HyperParamSpec& h) { return h.name == info.rank_param; });
    ASSERT_NE(it, info.hyper.end()) << info.rank_param;
    EXPECT_EQ(it->kind, HyperParamSpec::Kind::integer);
  }
  EXPECT_TRUE(info.eigen64.forward && info.eigen64.backward && info.eigen32.forward && info.eigen32.backward);
  EXPECT_TRUE(info.supports("eigen", "float64") && info.supports("eigen", "float32"));
  std::set<std::string> names;
  for (const auto& t : info.tensors) {
    EXPECT_TRUE(names.insert(t.name).second) << "duplicate tensor " << t.name;
    EXPECT_FALSE(t.peft_key.empty()) << t.name;
  }
  EXPECT_TRUE(names.count("weight") && names.count("bias"));
  // Linear always; the others only under PEFT's names (the Python side lowers each of them to a Linear)
  const std::set<std::string> known_layers = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "Conv1D"};
  EXPECT_EQ(std::count(info.layer_types.begin(), info.layer_types.end(), "Linear"), 1);
  for (const auto& l : info.layer_types) EXPECT_TRUE(known_layers.count(l)) << "unknown layer type " << l;
  if (info.grouped_convolutions)  // groups are a property of convolutions: declared only with one
    EXPECT_TRUE(std::count_if(info.layer_types.begin(), info.layer_types.end(),
                              [](const std::string& l) { return l.rfind("Conv", 0) == 0 && l != "Conv1D"; }) > 0);
  const HyperParams hp = resolve_hyper(info, {16, 12}, rank_hyper(info, {16, 12}, 4));  // defaults may not fit 16x12 (MiSS r=64)
  EXPECT_FALSE(info.trainable(hp).empty());
  const Cost f = info.forward_cost(32, {16, 12}, hp), b = info.backward_cost(32, {16, 12}, hp);
  EXPECT_GT(f.flops, 2.0 * 32 * 16 * 12);  // more than the base GEMM alone
  EXPECT_GT(b.flops, 0);
  EXPECT_GT(f.bytes, 0);
}

// With PEFT's default init (B = 0, gates 1, m = row norms of W) the layer equals the base layer, and the tensors the
// registry marks as zero-at-init really get an exactly zero gradient while the others do not.
TEST_P(Registry, PeftDefaultInitIsIdentityAndZerosAreWherePredicted) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {7, 5});  // odd widths, or the nearest the adapter takes (RoAd: 7 x 6)
  auto c = make_case(info, dims, rank_hyper(info, dims, 2), 3, 5);
  for (const auto* spec : info.trainable(c.hp)) {
    Mat<double>& m = c.tensors[spec->name];
    if (spec->peft_init == "zeros") m.setZero();
    if (spec->peft_init == "ones") m.setOnes();
    if (spec->peft_init.rfind("paired", 0) == 0)  // HRA: columns 2k and 2k+1 equal, so their reflections cancel
      for (int64_t k = 0; k + 1 < m.cols(); k += 2) m.col(k + 1) = m.col(k);
    if (spec->name == "lora_magnitude_vector") m = c.tensors.at("weight").rowwise().norm().transpose();
  }
  Mat<double> base = c.x * c.tensors.at("weight").transpose();
  base.rowwise() += c.tensors.at("bias").row(0);
  const Mat<double> y = info.eigen64.forward(c.x, c.tensors, c.hp);
  if (info.identity_at_init) EXPECT_LT((y - base).cwiseAbs().maxCoeff(), 1e-12);
  const Grads<double> g = info.eigen64.backward(c.x, c.tensors, c.hp, make_upstream(c, 5));
  for (const auto* spec : info.trainable(c.hp)) {
    const bool zero = g.dparams.at(spec->name).cwiseAbs().maxCoeff() == 0.0;
    EXPECT_EQ(zero, !spec->zero_grad_at_init.empty()) << spec->name;
  }
}

// Unmerged forward == forward of the base layer with the merged weight W + ΔW and merged bias b', both read off the
// adapter itself (b' = response to x = 0, W + ΔW from the response to unit inputs), so the identity needs no
// per-adapter merge code. b' = b for additive adapters; IA3's output form merges into the bias too (b ⊙ l).
TEST_P(Registry, UnmergedEqualsMerged) {
  const AdapterInfo& info = find_adapter(GetParam());
  for (const auto& [variant, hp] : test::flag_variants(info, {6, 4}, 2)) {
    SCOPED_TRACE(variant);
    const auto c = make_case(info, {6, 4}, hp, 5, 9);
    const Mat<double> bias = info.eigen64.forward(Mat<double>::Zero(1, 6), c.tensors, c.hp);  // (1, d_out) = b'
    Mat<double> merged = info.eigen64.forward(Mat<double>::Identity(6, 6), c.tensors, c.hp);  // row i = (W + ΔW) e_i + b'
    merged.rowwise() -= bias.row(0);                                                           // (d_in, d_out) = (W + ΔW)ᵀ
    Mat<double> y_merged = c.x * merged;
    y_merged.rowwise() += bias.row(0);
    EXPECT_LT((info.eigen64.forward(c.x, c.tensors, c.hp) - y_merged).cwiseAbs().maxCoeff(), 1e-12);
  }
}

TEST_P(Registry, Float32ReferenceTracksFloat64) {
  const AdapterInfo& info = find_adapter(GetParam());
  const Dims dims = check_dims(info, {9, 7});
  const auto c = make_case(info, dims, rank_hyper(info, dims, 3), 4, 2);
  const Mat<double> dy = make_upstream(c, 2);
  const BackendRun r64 = run_eigen(info, c, "float64", dy), r32 = run_eigen(info, c, "float32", dy);
  for (const auto& [key, ref] : r64) {
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(ref[i] - r32.at(key)[i]));
    EXPECT_LT(worst, 1e-4) << key;  // float32 rounding at these O(1) magnitudes; a wrong formula is O(1) off
  }
}

INSTANTIATE_TEST_SUITE_P(All, Registry, ::testing::ValuesIn(adapter_names()));

TEST(RegistryLookup, ListsTheBuiltInAdaptersFirstInRegistrationOrder) {
  const std::vector<std::string> built_in{"lora", "dora", "weight_lora", "my_lora", "adalora", "ia3", "loha", "lokr",
                                          "vera", "miss", "hra", "delora", "gralora", "kasa", "randlora", "c3a", "oft",
                                          "boft", "shira", "fourierft", "road", "vblora", "waveft"};
  const auto names = adapter_names();
  ASSERT_GE(names.size(), built_in.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + built_in.size()), built_in);
}

// The registry is what src/adapters/registry.list says, in its order: CMake's reading of the list (comments, blank
// lines) and the generated X-macro includes lose or reorder nothing.
TEST(RegistryLookup, EqualsTheRegistryListFile) {
  std::ifstream in(GG_REGISTRY_LIST);
  ASSERT_TRUE(in) << GG_REGISTRY_LIST;
  std::vector<std::string> listed;
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) listed.push_back(line);
  }
  EXPECT_EQ(adapter_names(), listed);
}

TEST(RegistryLookup, ScalingFollowsPeft) {
  const AdapterInfo& lora = find_adapter("lora");
  EXPECT_DOUBLE_EQ(lora.scaling(resolve_hyper(lora, {8, 8}, {{"r", 4}, {"lora_alpha", 16}})), 4.0);
  EXPECT_DOUBLE_EQ(lora.scaling(resolve_hyper(lora, {8, 8}, {{"r", 4}, {"lora_alpha", 16}, {"use_rslora", 1}})), 8.0);
  // AdaLoRA: scaling / (ranknum + 1e-5) with scaling = lora_alpha, or r when lora_alpha <= 0 (SVDLinear).
  const AdapterInfo& adalora = find_adapter("adalora");
  EXPECT_DOUBLE_EQ(adalora.scaling(resolve_hyper(adalora, {8, 8}, {{"init_r", 4}, {"lora_alpha", 16}})), 16 / (4 + 1e-5));
  EXPECT_DOUBLE_EQ(adalora.scaling(resolve_hyper(adalora, {8, 8}, {{"init_r", 4}, {"lora_alpha", 0}})), 4 / (4 + 1e-5));
}

}  // namespace
}  // namespace gg
