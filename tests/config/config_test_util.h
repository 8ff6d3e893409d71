#pragma once
// Helpers shared by the config tests.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"
#include "engine/config/json_fields.h"

namespace zt::test {

// The ConfigError message parsing text produces; fails the test when it parses.
inline std::string config_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config_text(text, "test.json", overrides);
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code(), 2);
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for: " << text;
  return "";
}

inline bool has_warning(const Config& cfg, const std::string& needle) {
  for (const auto& w : cfg.warnings)
    if (w.find(needle) != std::string::npos) return true;
  return false;
}

// A minimal valid config with the given extra top-level members ("" = none).
inline std::string with_batch(const std::string& members) {
  return std::string("{\"train_micro_batch_size_per_gpu\": 2") + (members.empty() ? "" : ", ") + members + "}";
}

}  // namespace zt::test
