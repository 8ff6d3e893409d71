#pragma once
// Typed reads of one JSON object of the config, with the JSON path in every error. Each read registers its key as
// known; finish() then rejects every key that no read asked for, suggesting the closest known one.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace zt {

struct ParseContext {
  std::string source;                  // file name or "<text>", prefixed to every message
  std::vector<std::string>* warnings;  // where deprecation / not-implemented / "auto" notes go
};

// The closest candidate to key by edit distance (Levenshtein); empty when there are no candidates.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);
size_t edit_distance(const std::string& a, const std::string& b);

// Short rendering of a JSON value for messages: "5", "\"abc\"", "[1,2]" (cut at 60 characters) plus its type.
std::string describe_value(const nlohmann::json& v);

[[noreturn]] void config_fail(const ParseContext& ctx, const std::string& message);

class ObjectReader {
 public:
  // obj must be a JSON object (else ConfigError naming path). path is "" for the top level.
  ObjectReader(const nlohmann::json& obj, std::string path, ParseContext& ctx);

  // Each get_* returns true when the key is present with a usable value (false when absent or "auto"; "auto"
  // leaves out unchanged and records a warning saying what zerotrain uses instead: auto_means, else out's value).
  bool get_int(const char* key, int64_t& out, int64_t min, int64_t max, const char* auto_means = nullptr);
  bool get_int(const char* key, int& out, int64_t min, int64_t max, const char* auto_means = nullptr);
  bool get_uint(const char* key, uint64_t& out);
  bool get_double(const char* key, double& out, double min, double max, const char* auto_means = nullptr);
  bool get_bool(const char* key, bool& out, const char* auto_means = nullptr);
  bool get_string(const char* key, std::string& out);
  // One of choices; case-insensitive when asked. out gets the choice's canonical spelling.
  bool get_choice(const char* key, std::string& out, const std::vector<std::string>& choices,
                  bool case_insensitive = false);
  // A string or a list of strings.
  bool get_string_list(const char* key, std::vector<std::string>& out);

  // Registers key as known and returns its value (nullptr when absent).
  const nlohmann::json* get_raw(const char* key);
  // A key DeepSpeed accepts whose meaning zerotrain does not implement: known, and a warning when present.
  void not_implemented(const char* key);
  // A deprecated spelling: known, and a warning naming the new key when present. Returns the value or nullptr.
  const nlohmann::json* deprecated(const char* old_key, const char* new_key);
  void known(const char* key) { known_.insert(key); }

  bool has(const char* key) const { return obj_.contains(key); }
  std::string path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& path() const { return path_; }
  ParseContext& ctx() { return ctx_; }

  // Throws ConfigError for the first key (in key order) that no read registered.
  void finish() const;

 private:
  const nlohmann::json* lookup(const char* key);
  bool is_auto(const char* key, const nlohmann::json& v, const std::string& value_now, const char* auto_means);
  [[noreturn]] void fail_type(const char* key, const nlohmann::json& v, const std::string& expected) const;

  const nlohmann::json& obj_;
  std::string path_;
  ParseContext& ctx_;
  std::set<std::string> known_;
};

}  // namespace zt
