#include "engine/config/json_fields.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "engine/base/error.h"

namespace zt {

size_t edit_distance(const std::string& a, const std::string& b) {
  // One row of the Levenshtein table at a time.
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) row[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); j++) {
      size_t up = row[j];
      size_t subst = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, subst});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = edit_distance(key, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

static const char* type_name(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

std::string describe_value(const nlohmann::json& v) {
  std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text + " (" + type_name(v) + ")";
}

void config_fail(const ParseContext& ctx, const std::string& message) {
  throw ConfigError(ctx.source + ": " + message);
}

ObjectReader::ObjectReader(const nlohmann::json& obj, std::string path, ParseContext& ctx)
    : obj_(obj), path_(std::move(path)), ctx_(ctx) {
  if (!obj_.is_object())
    config_fail(ctx_, (path_.empty() ? std::string("top level") : path_) + ": expected a JSON object, found " +
                          describe_value(obj_));
}

const nlohmann::json* ObjectReader::lookup(const char* key) {
  known_.insert(key);
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &*it;
}

const nlohmann::json* ObjectReader::get_raw(const char* key) { return lookup(key); }

void ObjectReader::fail_type(const char* key, const nlohmann::json& v, const std::string& expected) const {
  config_fail(ctx_, path_of(key) + ": expected " + expected + ", found " + describe_value(v));
}

bool ObjectReader::is_auto(const char* key, const nlohmann::json& v, const std::string& value_now,
                           const char* auto_means) {
  if (!(v.is_string() && v.get_ref<const std::string&>() == "auto")) return false;
  std::string meaning = auto_means ? std::string(auto_means) : "its default " + value_now;
  ctx_.warnings->push_back(path_of(key) + " is \"auto\": zerotrain uses " + meaning);
  return true;
}

static std::string range_text(int64_t min, int64_t max) {
  if (max == INT64_MAX) {
    if (min == 0) return "a non-negative integer";
    if (min == 1) return "a positive integer";
    return "an integer >= " + std::to_string(min);
  }
  return "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

bool ObjectReader::get_int(const char* key, int64_t& out, int64_t min, int64_t max, const char* auto_means) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (is_auto(key, *v, std::to_string(out), auto_means)) return false;
  int64_t value = 0;
  if (v->is_number_integer() && !v->is_number_unsigned()) {
    value = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) fail_type(key, *v, range_text(min, max));
    value = static_cast<int64_t>(u);
  } else if (v->is_number_float()) {
    // DeepSpeed configs write sizes as 5e8; accept a float when it is an exact integer.
    double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.2e18 || d > 9.2e18)
      fail_type(key, *v, range_text(min, max));
    value = static_cast<int64_t>(d);
  } else {
    fail_type(key, *v, range_text(min, max));
  }
  if (value < min || value > max) fail_type(key, *v, range_text(min, max));
  out = value;
  return true;
}

bool ObjectReader::get_int(const char* key, int& out, int64_t min, int64_t max, const char* auto_means) {
  int64_t wide = out;
  bool got = get_int(key, wide, std::max<int64_t>(min, INT32_MIN), std::min<int64_t>(max, INT32_MAX), auto_means);
  if (got) out = static_cast<int>(wide);
  return got;
}

bool ObjectReader::get_uint(const char* key, uint64_t& out) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (is_auto(key, *v, std::to_string(out), nullptr)) return false;
  if (v->is_number_unsigned()) {
    out = v->get<uint64_t>();
  } else if (v->is_number_integer() && v->get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v->get<int64_t>());
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) && v->get<double>() >= 0 &&
             v->get<double>() == std::floor(v->get<double>()) && v->get<double>() < 1.8e19) {
    out = static_cast<uint64_t>(v->get<double>());
  } else {
    fail_type(key, *v, "a non-negative integer");
  }
  return true;
}

static std::string number_text(double d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

bool ObjectReader::get_double(const char* key, double& out, double min, double max, const char* auto_means) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (is_auto(key, *v, number_text(out), auto_means)) return false;
  std::string expected = "a number in [" + number_text(min) + ", " + number_text(max) + "]";
  if (max == HUGE_VAL) expected = "a number >= " + number_text(min);
  if (!v->is_number()) fail_type(key, *v, expected);
  double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) fail_type(key, *v, expected);
  out = d;
  return true;
}

bool ObjectReader::get_bool(const char* key, bool& out, const char* auto_means) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (is_auto(key, *v, out ? "true" : "false", auto_means)) return false;
  if (!v->is_boolean()) fail_type(key, *v, "true or false");
  out = v->get<bool>();
  return true;
}

bool ObjectReader::get_string(const char* key, std::string& out) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (!v->is_string()) fail_type(key, *v, "a string");
  out = v->get<std::string>();
  return true;
}

static std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ObjectReader::get_choice(const char* key, std::string& out, const std::vector<std::string>& choices,
                              bool case_insensitive) {
  std::string expected = "one of";
  for (size_t i = 0; i < choices.size(); i++) expected += (i ? ", \"" : " \"") + choices[i] + "\"";
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (!v->is_string()) fail_type(key, *v, expected);
  const std::string& s = v->get_ref<const std::string&>();
  for (const auto& c : choices) {
    if (s == c || (case_insensitive && lower(s) == lower(c))) {
      out = c;
      return true;
    }
  }
  fail_type(key, *v, expected);
}

bool ObjectReader::get_string_list(const char* key, std::vector<std::string>& out) {
  const nlohmann::json* v = lookup(key);
  if (!v) return false;
  if (v->is_string()) {
    out = {v->get<std::string>()};
    return true;
  }
  if (!v->is_array()) fail_type(key, *v, "a string or a list of strings");
  std::vector<std::string> items;
  for (const auto& item : *v) {
    if (!item.is_string()) fail_type(key, *v, "a string or a list of strings");
    items.push_back(item.get<std::string>());
  }
  out = std::move(items);
  return true;
}

void ObjectReader::not_implemented(const char* key) {
  if (lookup(key))
    ctx_.warnings->push_back(path_of(key) + " is a DeepSpeed key that zerotrain accepts but does not implement yet; "
                                            "it is ignored");
}

const nlohmann::json* ObjectReader::deprecated(const char* old_key, const char* new_key) {
  const nlohmann::json* v = lookup(old_key);
  if (v) ctx_.warnings->push_back(path_of(old_key) + " is deprecated; use " + path_of(new_key) + " instead");
  return v;
}

void ObjectReader::finish() const {
  std::vector<std::string> candidates(known_.begin(), known_.end());
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (known_.count(it.key())) continue;
    std::string msg = "unknown key '" + path_of(it.key()) + "'";
    std::string best = closest_key(it.key(), candidates);
    if (!best.empty()) msg += " (did you mean '" + path_of(best) + "'?)";
    config_fail(ctx_, msg);
  }
}

}  // namespace zt
