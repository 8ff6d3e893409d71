// Command-line overrides "a.b.c=value", applied to the JSON document before validation so they are checked exactly
// like the file.
#include <string>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

void apply_override(nlohmann::json& doc, const std::string& override_text) {
  size_t eq = override_text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("override '" + override_text + "': expected key.path=value");
  std::string key_path = override_text.substr(0, eq);
  std::string value_text = override_text.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(value_text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    value = value_text;  // not JSON: a plain string such as a path
    try {
      (void)value.dump();
    } catch (const nlohmann::json::exception&) {
      throw ConfigError("override '" + key_path + "=...': the value is not valid UTF-8");
    }
  }

  if (!doc.is_object()) throw ConfigError("override '" + override_text + "': the config is not a JSON object");
  nlohmann::json* node = &doc;
  std::string walked;
  size_t start = 0;
  while (true) {
    size_t dot = key_path.find('.', start);
    std::string part = key_path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw ConfigError("override '" + override_text + "': empty key in '" + key_path + "'");
    walked += (walked.empty() ? "" : ".") + part;
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    nlohmann::json& child = (*node)[part];
    if (child.is_null()) child = nlohmann::json::object();
    if (!child.is_object())
      throw ConfigError("override '" + override_text + "': " + walked + " is not a JSON object");
    node = &child;
    start = dot + 1;
  }
}

}  // namespace zt
