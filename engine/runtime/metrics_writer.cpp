#include "engine/runtime/metrics_writer.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/base/error.h"

namespace zt {

MetricsWriter::MetricsWriter(const std::string& path) : MetricsWriter(path, false) {}

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_) throw RuntimeError("cannot open metrics file '" + path + "' for writing: " + std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (!f_) return;
  std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw RuntimeError("cannot write metrics file '" + path_ + "': " + std::strerror(errno));
}

size_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace zt
