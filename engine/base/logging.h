#pragma once
// Every log line goes through spdlog and carries the rank, so interleaved multi-rank output stays readable.
#include <spdlog/spdlog.h>

namespace zt {

// Installs the default logger with a "[rank R]" prefix. Call once per process, as early as possible.
void init_logging(int rank, int world_size);

}  // namespace zt
