// The zerotrain binary: parses the command line and config, then launches or runs a worker. Every error ends here
// as one message and an exit code (0 ok, 1 runtime failure, 2 bad usage or config).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"
#include "engine/runtime/job.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/report.h"
#include "engine/runtime/sweep.h"
#include "launcher/cli.h"

namespace {

int plan_main(const zt::CliArgs& args) {
  if (args.config_path.empty()) throw zt::ConfigError("zerotrain plan: missing --config FILE");
  // Planning for --nproc_per_node x --nnodes ranks: the config's own world_size (which the parser checks the batch
  // triple against) gives way to it, unless an override sets it again. A config whose batch triple only holds for
  // its own world size is planned as written (the plan needs only its micro batch).
  zt::Config cfg;
  if (args.nproc_per_node > 0) {
    std::vector<std::string> overrides{"world_size=" +
                                       std::to_string(args.nproc_per_node * (args.nnodes > 0 ? args.nnodes : 1))};
    overrides.insert(overrides.end(), args.overrides.begin(), args.overrides.end());
    try {
      cfg = zt::parse_config_file(args.config_path, overrides);
    } catch (const zt::ConfigError& for_world) {
      try {
        cfg = zt::parse_config_file(args.config_path, args.overrides);
      } catch (const zt::ConfigError&) {
        throw for_world;
      }
    }
  } else {
    cfg = zt::parse_config_file(args.config_path, args.overrides);
  }
  zt::PlanOptions o;
  o.model_preset = args.plan_model;
  if (!args.plan_params.empty()) o.num_params = zt::parse_param_count(args.plan_params);
  o.nproc_per_node = args.nproc_per_node > 0 ? args.nproc_per_node : (cfg.world_size > 0 ? cfg.world_size : 1);
  o.nnodes = args.nnodes > 0 ? args.nnodes : 1;
  if (args.nproc_per_node == 0 && args.nnodes > 0) o.nproc_per_node = std::max(1, o.nproc_per_node / o.nnodes);
  if (!args.device_memory.empty()) o.device_memory = zt::parse_byte_size("--device-memory", args.device_memory);
  if (!args.host_memory.empty()) o.host_memory = zt::parse_byte_size("--host-memory", args.host_memory);
  if (!args.nvme_free.empty()) o.nvme_free = zt::parse_byte_size("--nvme-free", args.nvme_free);
  zt::Plan plan;
  try {
    plan = zt::make_plan(cfg, o);
  } catch (const zt::ConfigError& e) {
    throw zt::ConfigError(args.config_path + ": " + e.what());
  }
  std::fputs(zt::format_plan(plan).c_str(), stdout);
  return zt::kExitOk;
}

int sweep_main(const zt::CliArgs& args) {
  zt::SweepOptions o;
  o.config_path = args.config_path;
  o.base_overrides = args.overrides;
  o.grids = args.grids;
  o.out_dir = args.out_dir;
  o.nproc_per_node = args.nproc_per_node;
  o.nnodes = args.nnodes;
  o.master_port = args.master_port;
  o.master_addr = args.master_addr;
  return zt::run_sweep(o);
}

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
  if (args.subcommand == "plan") return plan_main(args);
  if (args.subcommand == "sweep") return sweep_main(args);
  if (args.subcommand == "report") return zt::run_report(args.report_dirs, args.plots_dir, args.csv_path);
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
  return zt::run_main("zerotrain", [&] {
    zt::init_logging(0, 1);
    return zerotrain_main(argc, argv);
  });
}
