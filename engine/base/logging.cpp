#include "engine/base/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace zt {

void init_logging(int rank, int world_size) {
  spdlog::drop("zerotrain");
  auto logger = spdlog::stderr_color_mt("zerotrain");
  std::string prefix = world_size > 1 ? "[rank " + std::to_string(rank) + "] " : "";
  logger->set_pattern(prefix + "[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
}

}  // namespace zt
