#pragma once
// `zerotrain sweep`: runs the cross product of config grids one run at a time, each as a child zerotrain process in
// its own folder <out>/<name> with config.json, log.txt, metrics.jsonl and status.json. Finished runs are skipped
// when the same command runs again; SIGINT/SIGTERM stop the current run (forwarded to it) and leave the sweep
// resumable.
#include <string>
#include <vector>

namespace zt {

struct SweepAxis {
  std::string key;                  // config key path, e.g. zero_optimization.stage
  std::vector<std::string> values;  // as written, each later parsed as JSON by the config override
};

struct SweepOptions {
  std::string config_path;
  std::vector<std::string> base_overrides;  // key.path=value for every run
  std::vector<std::string> grids;           // key.path=v1,v2,...
  std::string out_dir;
  int nproc_per_node = 0;  // 0 = let each run decide
  int nnodes = 0;
  int master_port = 0;  // 0 = a free port per multi-rank run
  std::string master_addr;
  std::string executable;  // "" = this binary (/proc/self/exe)
};

// "key.path=v1,v2,..." -> axis; commas inside [], {} or "" do not split (so betas=[0.9,0.95],[0.9,0.99] works).
// Throws ConfigError for an empty key or value.
SweepAxis parse_sweep_axis(const std::string& grid);

// The cross product, first axis slowest: each point is its overrides key.path=value in axis order.
std::vector<std::vector<std::string>> sweep_points(const std::vector<SweepAxis>& axes);

// Filesystem-safe run name: the overrides joined by "__", characters outside [A-Za-z0-9._=+-] replaced by '_';
// names over 120 characters are cut and end in a hash of the full name so they stay distinct.
std::string sweep_run_name(const std::vector<std::string>& overrides);

// The last "zerotrain: error: MESSAGE" in a log (MESSAGE only), "" when none.
std::string last_error_line(const std::string& log_text);

// Runs the sweep. Returns 0 when every run finished, 1 when some failed, 130 when interrupted.
int run_sweep(const SweepOptions& options);

}  // namespace zt
