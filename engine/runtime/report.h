#pragma once
// `zerotrain report`: one row per run folder (a folder with metrics.jsonl or a sweep's status.json) as a Markdown
// table and a CSV, and PNG plots through gnuplot.
#include <cstdint>
#include <string>
#include <vector>

namespace zt {

struct RunSummary {
  std::string name;       // folder name
  std::string path;
  std::string overrides;  // from status.json (sweep runs), else from a sweep-style name; joined by ' '
  std::string status;     // status.json state; else "finished" when the metrics reach max_steps, else "incomplete"
  std::string error;
  int world_size = 0;
  int64_t max_steps = 0;
  int64_t steps = 0;  // last step in metrics.jsonl
  double final_loss = 0, best_val_loss = 0, median_tokens_per_s = 0, median_ms_per_step = 0;
  bool has_loss = false, has_val = false;
  int64_t model_state_bytes = 0;  // max over steps, rank 0
  int64_t peak_rss_bytes = 0;     // max over steps, rank 0's process
  // Curves for the plots.
  std::vector<int64_t> curve_step;
  std::vector<double> curve_tokens, curve_loss;
};

// A folder with metrics.jsonl or status.json is one run; otherwise its subfolders that are runs (in the order of
// its sweep.json when it has one, else by name). Throws ConfigError when a folder is missing or holds no run.
std::vector<std::string> find_run_dirs(const std::string& dir);

RunSummary summarize_run(const std::string& run_dir);

std::string report_markdown(const std::vector<RunSummary>& runs);
std::string report_csv(const std::vector<RunSummary>& runs);

// gnuplot on PATH (its full path), or "" when absent.
std::string find_gnuplot();

// Writes data files, plots.gp and loss_vs_step.png, loss_vs_tokens.png, tokens_per_s.png, memory_per_rank.png into
// plots_dir by running gnuplot; returns the PNG paths. Throws RuntimeError when gnuplot fails.
std::vector<std::string> write_report_plots(const std::vector<RunSummary>& runs, const std::string& plots_dir,
                                            const std::string& gnuplot);

// The subcommand: prints the table, writes report.csv (into the first DIR, or csv_path) and the plots.
int run_report(const std::vector<std::string>& dirs, const std::string& plots_dir, const std::string& csv_path);

}  // namespace zt
