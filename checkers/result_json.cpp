#include "checkers/result_json.hpp"

#include <cmath>

namespace gg {

// JSON has no Inf/NaN: a budget of Inf (NaN somewhere) is written as null with ok=false beside it.
static nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json to_json(const GradcheckResult& r) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : r.tensors)
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"ok", t.ok},
                       {"max_abs_err", number(t.max_abs_err)},
                       {"max_rel_err", number(t.max_rel_err)},
                       {"budget_used", number(t.budget_used)},
                       {"worst", t.worst},
                       {"analytic_at_worst", number(t.analytic_at_worst)},
                       {"numeric_at_worst", number(t.numeric_at_worst)},
                       {"checks", t.checks}});
  return {{"ok", r.ok},
          {"mode", to_string(r.mode)},
          {"eps", r.options.eps},
          {"atol", r.options.atol},
          {"rtol", r.options.rtol},
          {"stencil", r.options.four_point ? "4-point" : "central"},
          {"forward_evals", r.forward_evals},
          {"backward_evals", r.backward_evals},
          {"tensors", tensors}};
}

nlohmann::json to_json(const CompareStats& s) {
  return {{"tensor", s.tensor},       {"ok", s.ok},
          {"max_abs", number(s.max_abs)}, {"max_rel", number(s.max_rel)},
          {"nmse", number(s.nmse)},    {"worst_index", s.worst_index},
          {"budget_used", number(s.budget_used)}};
}

nlohmann::json to_json(const AdapterInfo& info) {
  nlohmann::json hyper = nlohmann::json::array();
  for (const auto& h : info.hyper) {
    const char* kind = h.kind == HyperParamSpec::Kind::integer ? "int"
                       : h.kind == HyperParamSpec::Kind::flag   ? "bool"
                       : h.kind == HyperParamSpec::Kind::derived ? "derived"
                                                                 : "float";
    hyper.push_back({{"name", h.name}, {"default", h.default_value}, {"kind", kind}, {"doc", h.doc}});
  }
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : info.tensors)
    tensors.push_back({{"name", t.name},
                       {"role", t.role == TensorRole::trainable ? "trainable" : "frozen"},
                       {"peft_key", t.peft_key},
                       {"peft_init", t.peft_init},
                       {"zero_grad_at_init", t.zero_grad_at_init},
                       {"optional", static_cast<bool>(t.present)},
                       {"kind", t.kind == TensorKind::positions ? "positions" : "values"}});
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& b : info.backends) backends.push_back({{"backend", b.backend}, {"dtypes", b.dtypes}, {"note", b.note}});
  nlohmann::json overrides = nlohmann::json::array();
  for (const auto& o : info.tolerance_overrides)
    overrides.push_back({{"check", o.check}, {"atol", o.atol}, {"rtol", o.rtol}, {"reason", o.reason}});
  nlohmann::json defects = nlohmann::json::array();
  for (const auto& d : info.peft_defects)
    defects.push_back({{"tensor", d.tensor}, {"avoid", d.avoid}, {"reason", d.reason}, {"regression_test", d.regression_test}});
  return {{"name", info.name},         {"peft_type", info.peft_type},
          {"summary", info.summary},   {"hyper", hyper},
          {"rank_param", info.rank_param},
          {"tensors", tensors},        {"backends", backends},
          {"identity_at_init", info.identity_at_init},
          {"layer_types", info.layer_types},
          {"grouped_convolutions", info.grouped_convolutions},
          {"tolerance_overrides", overrides},
          {"peft_defects", defects},
          {"notes", info.notes}};
}

}  // namespace gg
