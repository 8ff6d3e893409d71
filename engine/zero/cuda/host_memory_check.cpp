#include "engine/zero/cuda/host_memory_check.h"

#include <cstdio>
#include <fstream>

#include "engine/base/error.h"

namespace zt {
namespace {

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

}  // namespace

int64_t host_memory_available(const std::string& meminfo) {
  std::ifstream in(meminfo);
  std::string key, unit;
  int64_t kib = 0;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

void check_host_memory(size_t bytes, const std::string& what, int64_t available) {
  if (available <= 0 || static_cast<double>(bytes) <= static_cast<double>(available)) return;
  throw RuntimeError(what + " needs " + gib(static_cast<double>(bytes)) + " of host memory on this rank, but only " +
                     gib(static_cast<double>(available)) +
                     " are available (MemAvailable); use offload_optimizer.device nvme, more ranks or a smaller model");
}

}  // namespace zt
