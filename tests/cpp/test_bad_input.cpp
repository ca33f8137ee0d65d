// Table-driven bad input: each case must throw InputError whose message names the argument and what was expected.
#include <gtest/gtest.h>

#include <functional>

#include "checkers/adapter_harness.hpp"
#include "core/errors.hpp"

namespace gg {
namespace {

struct BadInput {
  const char* label;
  std::function<void()> call;
  std::vector<std::string> message_contains;
};

std::vector<BadInput> cases() {
  const AdapterInfo& lora = find_adapter("lora");
  return {
      {"unknown adapter", [] { find_adapter("lorra"); }, {"'adapter'", "lora", "dora", "weight_lora", "my_lora", "'lorra'"}},
      {"zero d_in", [&] { resolve_hyper(lora, {0, 4}, {}); }, {"'d_in'", "positive"}},
      {"negative d_out", [&] { resolve_hyper(lora, {4, -2}, {}); }, {"'d_out'", "positive", "-2"}},
      {"zero rank", [&] { resolve_hyper(lora, {4, 4}, {{"r", 0}}); }, {"'r'", ">= 1"}},
      {"rank too large", [&] { resolve_hyper(lora, {16, 4}, {{"r", 5}}); }, {"'r'", "min(d_in, d_out) = 4", "5"}},
      {"fractional rank", [&] { resolve_hyper(lora, {8, 8}, {{"r", 2.5}}); }, {"'r'", "integer"}},
      {"unknown hyper-parameter", [&] { resolve_hyper(lora, {8, 8}, {{"rank", 2}}); }, {"'rank'", "lora_alpha"}},
      {"rank under another name",  // AdaLoRA's rank is init_r: r is refused with the names it does take
       [] { resolve_hyper(find_adapter("adalora"), {8, 8}, {{"r", 2}}); }, {"'r'", "init_r"}},
      {"AdaLoRA rank too large", [] { resolve_hyper(find_adapter("adalora"), {16, 4}, {}); },
       {"'init_r'", "min(d_in, d_out) = 4", "12"}},
      {"flag not 0/1", [&] { resolve_hyper(lora, {8, 8}, {{"use_rslora", 2}}); }, {"'use_rslora'", "flag"}},
      {"x/W shape mismatch",
       [&] {
         auto c = make_case(lora, {6, 4}, {{"r", 2}}, 3, 0);
         c.x = Mat<double>::Ones(3, 5);
         validate_call(lora, c.dims, c.hp, c.x, c.tensors);
       },
       {"'x'", "(N, 6)", "(4, 6)", "(3, 5)"}},
      {"parameter shape mismatch",
       [&] {
         auto c = make_case(lora, {6, 4}, {{"r", 2}}, 3, 0);
         c.tensors["lora_A"] = Mat<double>::Ones(6, 2);
         validate_call(lora, c.dims, c.hp, c.x, c.tensors);
       },
       {"lora_A", "(2, 6)", "(6, 2)"}},
      {"NaN input",
       [&] {
         auto c = make_case(lora, {6, 4}, {{"r", 2}}, 3, 0);
         c.x(1, 1) = std::nan("");
         gradcheck(eigen_differentiable(lora, c), policy_options(lora, GradcheckMode::fast, 0));
       },
       {"inputs['x']", "finite", "NaN"}},
      {"Inf parameter",
       [&] {
         auto c = make_case(lora, {6, 4}, {{"r", 2}}, 3, 0);
         c.tensors["lora_B"](0, 0) = INFINITY;
         gradcheck(eigen_differentiable(lora, c), policy_options(lora, GradcheckMode::full, 0));
       },
       {"inputs['lora_B']", "finite", "Inf"}},
      {"non-positive rows", [&] { make_case(lora, {6, 4}, {}, 0, 0); }, {"'n_rows'", "positive"}},
      {"unknown gradcheck mode", [] { parse_gradcheck_mode("exact"); }, {"'mode'", "'fast' or 'full'", "'exact'"}},
      {"unknown dtype",
       [&] {
         const auto c = make_case(lora, {6, 4}, {{"r", 2}}, 3, 0);
         run_eigen(lora, c, "float16", make_upstream(c, 0));
       },
       {"'dtype'", "float64 or float32", "'float16'"}},
      {"full Jacobian too large",
       [&] {
         const auto c = make_case(lora, {64, 64}, {{"r", 8}}, 64, 0);
         auto o = policy_options(lora, GradcheckMode::full, 0);
         o.max_full_entries = 1000;
         gradcheck(eigen_differentiable(lora, c), o);
       },
       {"'mode'", "'fast'"}},
  };
}

TEST(BadInput, EachCaseNamesTheArgumentAndTheExpectation) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    try {
      c.call();
      ADD_FAILURE() << "no error raised";
    } catch (const InputError& e) {
      for (const auto& s : c.message_contains) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace gg
