// The zerotrain binary: parses the command line and config, then launches or runs a worker. Every error ends here
// as one message and an exit code (0 ok, 1 runtime failure, 2 bad usage or config).
#include <cstdio>
#include <exception>
#include <string>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"
#include "engine/runtime/job.h"
#include "launcher/cli.h"

namespace {

int zerotrain_main(int argc, char** argv) {
  zt::CliArgs args = zt::parse_cli(argc, argv);
  if (args.help) {
    std::fputs(zt::cli_usage().c_str(), stdout);
    return zt::kExitOk;
  }
  if (args.version) {
    std::printf("zerotrain %s\n", ZT_VERSION);
    return zt::kExitOk;
  }
  if (!args.subcommand.empty()) throw zt::ConfigError("zerotrain " + args.subcommand + ": not implemented yet");
  if (args.config_path.empty()) throw zt::ConfigError("missing --config FILE (see zerotrain --help)");

  zt::Config cfg = zt::parse_config_file(args.config_path, args.overrides);
  for (const auto& w : cfg.warnings) spdlog::warn("{}", w);
  for (const auto& n : cfg.notes) spdlog::info("{}", n);

  const int world_size = zt::cli_world_size(cfg.world_size, args);
  // Validates the batch triple for the launch's world size, before any rank starts.
  zt::BatchConfig batch;
  try {
    batch = zt::resolve_batch(cfg, world_size);
  } catch (const zt::ConfigError& e) {
    throw zt::ConfigError(args.config_path + ": " + e.what());
  }

  if (args.print_config || args.dry_run) {
    std::printf("%s\n", zt::config_to_json(cfg).dump(2).c_str());
  }
  if (args.dry_run) {
    std::printf("batch: train_batch_size %lld = train_micro_batch_size_per_gpu %lld * gradient_accumulation_steps "
                "%lld * world_size %d\n",
                static_cast<long long>(batch.train_batch_size), static_cast<long long>(batch.micro_batch_per_gpu),
                static_cast<long long>(batch.gradient_accumulation_steps), world_size);
    zt::MemoryEstimateInput in = zt::memory_estimate_input(cfg, world_size);
    std::fputs(zt::format_memory_estimate(in, zt::estimate_model_state_bytes(in)).c_str(), stdout);
  }
  if (args.print_config || args.dry_run) return zt::kExitOk;

  // === Training entry: the config is resolved and validated; the runtime takes over from here. ===
  return zt::run_job(cfg, args);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    zt::init_logging(0, 1);
    return zerotrain_main(argc, argv);
  } catch (const zt::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "zerotrain: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "zerotrain: error: %s\n", e.what());
    return zt::kExitRuntime;
  }
}
