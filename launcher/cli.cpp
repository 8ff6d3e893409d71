#include "launcher/cli.h"

#include <cerrno>
#include <cstdlib>

#include "engine/base/error.h"

namespace zt {

std::string cli_usage() {
  return "usage: zerotrain --config FILE [key.path=value ...] [options]\n"
         "\n"
         "Trains a GPT-2 model with ZeRO from a DeepSpeed JSON config (docs/config.md lists every key).\n"
         "\n"
         "options:\n"
         "  --config FILE          the DeepSpeed-style JSON config\n"
         "  key.path=value         override one config key (value parsed as JSON, else a string),\n"
         "                         e.g. zero_optimization.stage=2 train.max_steps=20 data.train=/x/*.bin\n"
         "  --dry-run              print the resolved config and a per-rank memory estimate, then exit\n"
         "  --print-config         print the resolved config as JSON, then exit\n"
         "  --nproc_per_node N     ranks on this node\n"
         "  --nnodes M             number of nodes\n"
         "  --node_rank R          this node's index\n"
         "  --master_addr A        address of node 0\n"
         "  --master_port P        port of the rendezvous on node 0\n"
         "  --help                 this text\n"
         "  --version              print the version\n"
         "\n"
         "subcommands (docs/experiments.md):\n"
         "  zerotrain plan --config FILE [--model PRESET | --params N] [--nproc_per_node N] [--nnodes M]\n"
         "                 [--device-memory 80GiB] [--host-memory 128GiB] [--nvme-free 2TiB]\n"
         "      per-rank memory of every ZeRO stage x offload, what fits, and the fastest that does\n"
         "  zerotrain sweep --config FILE --grid key.path=v1,v2 [--grid ...] --out DIR [--nproc_per_node N]\n"
         "      runs the cross product of the grids one after another into DIR/<run>; rerun to resume\n"
         "  zerotrain report DIR... [--plots DIR] [--csv PATH]\n"
         "      table (Markdown + CSV) of the runs in DIR..., and PNG plots through gnuplot\n"
         "exit codes: 0 success, 1 runtime failure, 2 bad usage or config\n";
}

static int parse_int_flag(const std::string& flag, const std::string& value, int min, int max) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || v < min || v > max)
    throw ConfigError(flag + ": expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                      "], got '" + value + "'");
  return static_cast<int>(v);
}

CliArgs parse_cli(int argc, const char* const* argv) {
  CliArgs args;
  for (int k = 0; k < argc; ++k) args.argv.emplace_back(argv[k]);
  int i = 1;
  if (argc > 1) {
    std::string first = argv[1];
    if (first == "plan" || first == "sweep" || first == "report") {
      args.subcommand = first;
      i = 2;
    }
  }
  for (; i < argc; i++) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      std::string flag = arg, value;
      bool has_inline = false;
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        flag = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        has_inline = true;
      }
      auto bool_flag = [&](bool& out) {
        if (has_inline) throw ConfigError(flag + " takes no value");
        out = true;
      };
      auto take_value = [&]() -> std::string {
        if (has_inline) return value;
        if (i + 1 >= argc) throw ConfigError(flag + ": missing value");
        return argv[++i];
      };
      if (flag == "--help") {
        bool_flag(args.help);
      } else if (flag == "--version") {
        bool_flag(args.version);
      } else if (flag == "--dry-run" || flag == "--dry_run") {
        bool_flag(args.dry_run);
      } else if (flag == "--print-config" || flag == "--print_config") {
        bool_flag(args.print_config);
      } else if (flag == "--config") {
        args.config_path = take_value();
        if (args.config_path.empty()) throw ConfigError("--config: empty file name");
      } else if (flag == "--nproc_per_node" || flag == "--nproc-per-node") {
        args.nproc_per_node = parse_int_flag(flag, take_value(), 1, 1 << 16);
      } else if (flag == "--nnodes") {
        args.nnodes = parse_int_flag(flag, take_value(), 1, 1 << 16);
      } else if (flag == "--node_rank" || flag == "--node-rank") {
        args.node_rank = parse_int_flag(flag, take_value(), 0, 1 << 16);
        args.node_rank_given = true;
      } else if (flag == "--master_addr" || flag == "--master-addr") {
        args.master_addr = take_value();
        if (args.master_addr.empty()) throw ConfigError(flag + ": empty address");
      } else if (flag == "--master_port" || flag == "--master-port") {
        args.master_port = parse_int_flag(flag, take_value(), 1, 65535);
      } else if (flag == "--model" && args.subcommand == "plan") {
        args.plan_model = take_value();
      } else if (flag == "--params" && args.subcommand == "plan") {
        args.plan_params = take_value();
      } else if ((flag == "--device-memory" || flag == "--device_memory") && args.subcommand == "plan") {
        args.device_memory = take_value();
      } else if ((flag == "--host-memory" || flag == "--host_memory") && args.subcommand == "plan") {
        args.host_memory = take_value();
      } else if ((flag == "--nvme-free" || flag == "--nvme_free") && args.subcommand == "plan") {
        args.nvme_free = take_value();
      } else if (flag == "--grid" && args.subcommand == "sweep") {
        std::string g = take_value();
        if (g.find('=') == std::string::npos || g[0] == '=')
          throw ConfigError("--grid: expected key.path=v1,v2,..., got '" + g + "'");
        args.grids.push_back(g);
      } else if (flag == "--out" && args.subcommand == "sweep") {
        args.out_dir = take_value();
        if (args.out_dir.empty()) throw ConfigError("--out: empty folder name");
      } else if (flag == "--plots" && args.subcommand == "report") {
        args.plots_dir = take_value();
        if (args.plots_dir.empty()) throw ConfigError("--plots: empty folder name");
      } else if (flag == "--csv" && args.subcommand == "report") {
        args.csv_path = take_value();
        if (args.csv_path.empty()) throw ConfigError("--csv: empty file name");
      } else {
        throw ConfigError("unknown option '" + flag + "'" +
                          (args.subcommand.empty() ? "" : " for zerotrain " + args.subcommand) +
                          " (see zerotrain --help)");
      }
    } else if (arg == "-h") {
      args.help = true;
    } else if (args.subcommand == "report") {
      // Run folders may have '=' in their names (sweep runs do): every positional is a folder here.
      args.report_dirs.push_back(arg);
    } else if (arg.find('=') != std::string::npos && arg[0] != '=') {
      args.overrides.push_back(arg);
    } else {
      throw ConfigError("unexpected argument '" + arg + "' (config overrides are written key.path=value)");
    }
  }
  if (!args.plan_model.empty() && !args.plan_params.empty())
    throw ConfigError("zerotrain plan: give --model or --params, not both");
  if (args.nnodes > 0 && args.node_rank_given && args.node_rank >= args.nnodes)
    throw ConfigError("--node_rank " + std::to_string(args.node_rank) + " must be less than --nnodes " +
                      std::to_string(args.nnodes));
  return args;
}

int cli_world_size(int config_world_size, const CliArgs& args) {
  // The launch flags win over the config's world_size, as torchrun's do over a script's defaults.
  if (args.nproc_per_node > 0) return args.nproc_per_node * (args.nnodes > 0 ? args.nnodes : 1);
  if (config_world_size > 0) return config_world_size;
  return 1;
}

}  // namespace zt
