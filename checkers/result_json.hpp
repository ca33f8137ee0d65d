// JSON forms of checker results: the one serialisation used by the Python package, the CLI (--json) and reports.
#pragma once
#include <nlohmann/json.hpp>

#include "checkers/compare.hpp"
#include "checkers/gradcheck.hpp"
#include "core/registry.hpp"

namespace gg {

nlohmann::json to_json(const GradcheckResult& r);
nlohmann::json to_json(const CompareStats& s);
nlohmann::json to_json(const AdapterInfo& info);  // the registry entry (shapes as strings in d_in, d_out, r)

}  // namespace gg
