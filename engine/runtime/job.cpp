// Placeholder until the runtime lands: the lead replaces this file with the real launch/train entry.
#include "engine/runtime/job.h"

#include "engine/base/logging.h"

namespace zt {

int run_job(const Config& cfg, const CliArgs& args) {
  (void)cfg;
  (void)args;
  spdlog::info("training not available in this build");
  return 0;
}

}  // namespace zt
