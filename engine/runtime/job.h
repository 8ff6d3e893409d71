#pragma once
// The entry from the command line into training: after the config is parsed and validated, main() hands it here.
#include "engine/config/config.h"
#include "launcher/cli.h"

namespace zt {

// Launches or runs the training job; returns the process exit code. Throws zt::Error on failure.
int run_job(const Config& cfg, const CliArgs& args);

}  // namespace zt
