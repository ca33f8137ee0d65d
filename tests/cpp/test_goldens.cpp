// Goldens written from the pinned PEFT by fixtures/make_goldens.py: the Eigen float64 reference must reproduce
// PEFT's outputs and gradients for every adapter × case (shapes aligned, odd/prime, r = 1).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "checkers/compare.hpp"
#include "checkers/tolerance.hpp"
#include "core/registry.hpp"
#include "core/safetensors.hpp"

namespace gg {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> golden_files() {
  std::vector<std::string> files;
  const fs::path dir = fs::path(GG_FIXTURES_DIR) / "goldens";
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

Mat<double> as_mat(const SafeTensor& t) {
  auto [rows, cols] = storage_dims(t.shape);
  return Eigen::Map<const Mat<double>>(t.values.data(), rows, cols);
}

std::vector<double> flat(const Mat<double>& m) { return std::vector<double>(m.data(), m.data() + m.size()); }

TEST(Goldens, EveryAdapterHasGoldens) {
  std::set<std::string> seen;
  for (const auto& f : golden_files()) seen.insert(read_safetensors(f).metadata.at("adapter"));
  for (const auto& name : adapter_names()) EXPECT_TRUE(seen.count(name)) << "no golden for " << name << " in fixtures/goldens";
}

TEST(Goldens, EigenReferenceReproducesPeft) {
  const auto files = golden_files();
  ASSERT_FALSE(files.empty()) << "fixtures/goldens is empty: run fixtures/make_goldens.py";
  for (const auto& file : files) {
    SCOPED_TRACE(file);
    const SafetensorsFile g = read_safetensors(file);
    ASSERT_EQ(g.metadata.at("gradguard_fixture_version"), "1");
    const AdapterInfo& info = find_adapter(g.metadata.at("adapter"));
    HyperParams given;
    const nlohmann::json hp_json = nlohmann::json::parse(g.metadata.at("hp"));  // named: items() views it
    for (auto& [k, v] : hp_json.items()) given[k] = v.is_boolean() ? v.get<bool>() : v.get<double>();
    const Shape wshape = g.tensors.at("weight").shape;
    const Dims dims{wshape[1], wshape[0]};
    const HyperParams hp = resolve_hyper(info, dims, given);
    TensorMap<double> t;
    for (const auto* spec : info.present_tensors(hp)) t[spec->name] = as_mat(g.tensors.at(spec->name));
    const Mat<double> x = as_mat(g.tensors.at("x"));
    validate_call(info, dims, hp, x, t);
    // The goldens are PEFT's own float64 outputs: the float64 policy, unless the registry declares (with its reason)
    // a known PEFT deviation under the check "peft".
    const ToleranceOverride* over = tolerance::override_for(info, "peft");
    const double atol = over ? over->atol : tolerance::f64_atol, rtol = over ? over->rtol : tolerance::f64_rtol;
    // A known PEFT defect (registry) must still show in PEFT's numbers; when it no longer does, PEFT fixed it.
    auto check = [&](const std::string& key, const std::string& golden_key, const Mat<double>& ours) {
      const auto s = compare_to_reference(golden_key, g.tensors.at(golden_key).values, flat(ours), {}, 0, atol, rtol);
      if (const PeftDefect* defect = known_peft_defect(info, key, hp))
        EXPECT_FALSE(s.ok) << golden_key << ": PEFT no longer shows the known defect (" << defect->reason << ")";
      else
        EXPECT_TRUE(s.ok) << golden_key << " max_abs " << s.max_abs << " at " << s.worst_index;
    };
    check("y", "y", info.eigen64.forward(x, t, hp));
    const Grads<double> grads = info.eigen64.backward(x, t, hp, as_mat(g.tensors.at("dy")));
    check("dx", "grad.x", grads.dx);
    for (const auto* spec : info.trainable(hp)) check("d " + spec->name, "grad." + spec->name, grads.dparams.at(spec->name));
  }
}

}  // namespace
}  // namespace gg
