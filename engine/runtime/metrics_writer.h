#pragma once
// metrics.jsonl: one JSON object per line — first the run (resolved config, world size, version), then one per
// optimizer step and one per eval. Doubles are written in shortest round-trip form (full precision).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace zt {

class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path);  // creates parent directories; truncates unless append
  MetricsWriter(const std::string& path, bool append);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const nlohmann::json& record);  // one line, flushed
  bool is_open() const { return f_ != nullptr; }

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

// Peak resident set size of this process, in bytes.
size_t peak_rss_bytes();

}  // namespace zt
