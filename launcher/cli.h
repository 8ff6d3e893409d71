#pragma once
// The zerotrain command line:
//   zerotrain --config FILE [key.path=value ...] [--dry-run] [--print-config] [--help] [--version]
//             [--nproc_per_node N] [--nnodes M] [--node_rank R] [--master_addr A] [--master_port P]
//   zerotrain plan --config FILE [--model PRESET | --params N] [--device-memory SIZE] [--host-memory SIZE]
//             [--nvme-free SIZE] [--nproc_per_node N] [--nnodes M]
//   zerotrain sweep --config FILE --grid key.path=v1,v2 [--grid ...] --out DIR [--nproc_per_node N]
//   zerotrain report DIR... [--plots DIR] [--csv PATH]
#include <string>
#include <vector>

namespace zt {

struct CliArgs {
  std::vector<std::string> argv;  // the command line as given (the launcher re-runs it in each worker)
  std::string subcommand;  // "" = train, or "plan", "sweep", "report" (docs/experiments.md)
  std::string config_path;
  std::vector<std::string> overrides;  // positional key.path=value
  bool dry_run = false;
  bool print_config = false;
  bool help = false;
  bool version = false;
  // Launcher options (0 / empty = not given).
  int nproc_per_node = 0;
  int nnodes = 0;
  int node_rank = 0;
  bool node_rank_given = false;
  std::string master_addr;
  int master_port = 0;
  // plan
  std::string plan_model;     // --model PRESET
  std::string plan_params;    // --params N (e.g. 7e9)
  std::string device_memory;  // --device-memory SIZE
  std::string host_memory;    // --host-memory SIZE
  std::string nvme_free;      // --nvme-free SIZE
  // sweep
  std::vector<std::string> grids;  // --grid key.path=v1,v2,... (repeatable)
  std::string out_dir;             // --out DIR
  // report
  std::vector<std::string> report_dirs;  // positional run or sweep folders
  std::string plots_dir;                 // --plots DIR
  std::string csv_path;                  // --csv PATH
};

// Throws ConfigError for an unknown flag, a missing or bad value, or a stray positional argument. Does not require
// --config (main decides, since --help and --version need none). Flags take "--flag VALUE" or "--flag=VALUE".
CliArgs parse_cli(int argc, const char* const* argv);

std::string cli_usage();

// World size for a CPU run or an estimate: nproc_per_node * nnodes when given, else config world_size, else 1.
int cli_world_size(int config_world_size, const CliArgs& args);

}  // namespace zt
