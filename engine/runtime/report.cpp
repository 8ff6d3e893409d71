#include "engine/runtime/report.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.h"
#include "engine/config/memory_estimate.h"
#include "engine/runtime/markdown_table.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool is_run_dir(const fs::path& d) { return fs::exists(d / "metrics.jsonl") || fs::exists(d / "status.json"); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string mib(int64_t bytes) { return bytes > 0 ? fmt("%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0)) : ""; }

std::vector<std::string> row_cells(const RunSummary& r) {
  return {r.name,
          r.overrides,
          r.status,
          r.world_size > 0 ? std::to_string(r.world_size) : "",
          std::to_string(r.steps),
          r.has_loss ? fmt("%.4f", r.final_loss) : "",
          r.has_val ? fmt("%.4f", r.best_val_loss) : "",
          r.median_tokens_per_s > 0 ? fmt("%.0f", r.median_tokens_per_s) : "",
          r.median_ms_per_step > 0 ? fmt("%.1f", r.median_ms_per_step) : "",
          mib(r.model_state_bytes),
          mib(r.peak_rss_bytes)};
}

const std::vector<std::string> kHeader = {"run",          "overrides",     "status",         "ranks",
                                          "steps",        "final loss",    "best val loss",  "median tok/s",
                                          "median ms/step", "model states MiB/rank", "peak RSS MiB/rank"};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  q += '"';
  return q;
}

// gnuplot string literal in single quotes ('' is a quote inside).
std::string gp_string(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += '\'';
    q += c;
  }
  q += '\'';
  return q;
}

// A plot label: each override by its last key segment ("zero_optimization.stage=2" -> "stage=2"), else the name.
std::string short_label(const RunSummary& r) {
  if (r.overrides.empty()) return r.name;
  std::string label, word;
  std::istringstream in(r.overrides);
  while (in >> word) {
    const size_t eq = word.find('=');
    const size_t dot = word.rfind('.', eq);
    if (!label.empty()) label += ' ';
    label += dot == std::string::npos ? word : word.substr(dot + 1);
  }
  return label;
}

}  // namespace

std::vector<std::string> find_run_dirs(const std::string& dir) {
  const fs::path d = dir;
  if (!fs::is_directory(d)) throw ConfigError("zerotrain report: " + dir + " is not a folder");
  if (is_run_dir(d)) return {d.string()};
  std::vector<std::string> runs;
  if (fs::exists(d / "sweep.json")) {
    nlohmann::json sw = nlohmann::json::parse(read_text(d / "sweep.json"), nullptr, false);
    if (sw.is_object() && sw.contains("runs") && sw["runs"].is_array())
      for (const auto& n : sw["runs"])
        if (n.is_string() && is_run_dir(d / n.get<std::string>())) runs.push_back((d / n.get<std::string>()).string());
  }
  if (runs.empty()) {
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_directory() && is_run_dir(e.path())) runs.push_back(e.path().string());
    std::sort(runs.begin(), runs.end());
  }
  if (runs.empty()) throw ConfigError("zerotrain report: " + dir + " holds no run (no metrics.jsonl or status.json)");
  return runs;
}

RunSummary summarize_run(const std::string& run_dir) {
  const fs::path d = run_dir;
  RunSummary r;
  r.path = d.string();
  r.name = d.filename().string();
  if (r.name.empty()) r.name = d.parent_path().filename().string();
  std::vector<double> tps, ms;
  double tokens = 0;
  std::ifstream in(d / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) continue;  // a line cut by a crash
    const std::string type = j.value("type", "");
    if (type == "run") {
      r.world_size = j.value("world_size", 0);
      if (j.contains("config") && j["config"].contains("train"))
        r.max_steps = j["config"]["train"].value("max_steps", int64_t{0});
      if (j.value("resumed_from_step", int64_t{0}) == 0) {  // a fresh start replaces what came before
        tokens = 0;
        r.curve_step.clear(), r.curve_tokens.clear(), r.curve_loss.clear(), tps.clear(), ms.clear();
        r.has_val = false;
      }
    } else if (type == "step") {
      const int64_t step = j.value("step", int64_t{0});
      const double t = j.value("tokens_per_s", 0.0), m = j.value("ms_per_step", 0.0);
      r.steps = step;
      tokens += t * m / 1000.0;  // tokens of this step
      if (j.contains("loss") && j["loss"].is_number()) {
        r.final_loss = j["loss"].get<double>();
        r.has_loss = true;
        r.curve_step.push_back(step);
        r.curve_tokens.push_back(tokens);
        r.curve_loss.push_back(r.final_loss);
      }
      tps.push_back(t);
      ms.push_back(m);
      r.model_state_bytes = std::max(r.model_state_bytes, j.value("model_state_bytes", int64_t{0}));
      r.peak_rss_bytes = std::max(r.peak_rss_bytes, j.value("peak_rss_bytes", int64_t{0}));
    } else if (type == "eval" && j.contains("val_loss") && j["val_loss"].is_number()) {
      const double v = j["val_loss"].get<double>();
      if (!r.has_val || v < r.best_val_loss) r.best_val_loss = v;
      r.has_val = true;
    }
  }
  r.median_tokens_per_s = median(tps);
  r.median_ms_per_step = median(ms);
  r.status = r.max_steps > 0 && r.steps >= r.max_steps ? "finished" : "incomplete";
  if (fs::exists(d / "status.json")) {
    nlohmann::json st = nlohmann::json::parse(read_text(d / "status.json"), nullptr, false);
    if (st.is_object()) {
      r.status = st.value("state", r.status);
      r.error = st.value("error", "");
      if (st.contains("overrides") && st["overrides"].is_array())
        for (const auto& o : st["overrides"])
          if (o.is_string()) {
            if (!r.overrides.empty()) r.overrides += ' ';
            r.overrides += o.get<std::string>();
          }
    }
  }
  if (r.overrides.empty() && r.name.find('=') != std::string::npos) {
    // A sweep run folder without its status.json: the name is the overrides joined by "__".
    std::string rest = r.name;
    for (size_t at; (at = rest.find("__")) != std::string::npos; rest = rest.substr(at + 2)) {
      r.overrides += rest.substr(0, at);
      r.overrides += ' ';
    }
    r.overrides += rest;
  }
  return r;
}

std::string report_markdown(const std::vector<RunSummary>& runs) {
  std::vector<std::vector<std::string>> cells{kHeader};
  for (const auto& r : runs) cells.push_back(row_cells(r));
  std::string s = markdown_table(cells);
  for (const auto& r : runs)
    if (!r.error.empty()) {
      s += r.name;
      s += ": ";
      s += r.error;
      s += '\n';
    }
  return s;
}

std::string report_csv(const std::vector<RunSummary>& runs) {
  std::vector<std::string> header = kHeader;
  header.push_back("error");
  std::string s;
  auto emit = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) s += ',';
      s += csv_field(row[i]);
    }
    s += "\n";
  };
  emit(header);
  for (const auto& r : runs) {
    auto row = row_cells(r);
    row.push_back(r.error);
    emit(row);
  }
  return s;
}

std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path p = fs::path(dir) / "gnuplot";
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

std::vector<std::string> write_report_plots(const std::vector<RunSummary>& runs, const std::string& plots_dir,
                                            const std::string& gnuplot) {
  const fs::path out = plots_dir;
  fs::create_directories(out);
  std::vector<size_t> with_curve;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].curve_step.empty()) continue;
    with_curve.push_back(i);
    std::ofstream f(out / ("loss_" + std::to_string(i) + ".dat"));
    f << "# step tokens loss\n";
    for (size_t k = 0; k < runs[i].curve_step.size(); ++k)
      f << runs[i].curve_step[k] << ' ' << fmt("%.1f", runs[i].curve_tokens[k]) << ' '
        << fmt("%.6f", runs[i].curve_loss[k]) << '\n';
  }
  // Bars only for runs that recorded steps (a run that failed at start has nothing to show).
  std::vector<size_t> with_steps;
  for (size_t i = 0; i < runs.size(); ++i)
    if (runs[i].steps > 0) with_steps.push_back(i);
  {
    std::ofstream f(out / "runs.dat");
    f << "# index tokens_per_s model_state_MiB peak_rss_MiB label\n";
    if (with_steps.empty()) f << "0 0 0 0 \"no steps recorded\"\n";  // gnuplot refuses an empty file
    for (size_t k = 0; k < with_steps.size(); ++k) {
      const size_t i = with_steps[k];
      std::string label = short_label(runs[i]);
      for (char& c : label)
        if (c == '"') c = '\'';
      f << k << ' ' << fmt("%.1f", runs[i].median_tokens_per_s) << ' '
        << fmt("%.3f", static_cast<double>(runs[i].model_state_bytes) / 1048576.0) << ' '
        << fmt("%.3f", static_cast<double>(runs[i].peak_rss_bytes) / 1048576.0) << " \"" << label << "\"\n";
    }
  }
  const std::string gp_path = (out / "plots.gp").string();
  std::ofstream gp(gp_path);
  gp << "# zerotrain report: run with gnuplot " << gp_path << "\n"
     << "set terminal pngcairo size 1200,700 noenhanced font ',10'\n"
     << "set grid\nset key below\n";
  auto loss_plot = [&](const char* file, const char* xcol, const char* xlabel) {
    gp << "set output " << gp_string((out / file).string()) << "\n"
       << "set title 'train loss'\nset xlabel '" << xlabel << "'\nset ylabel 'loss'\n";
    if (with_curve.empty()) {
      gp << "set xrange [0:1]\nset yrange [0:1]\nplot 2 title 'no steps recorded'\nset autoscale\n";
      return;
    }
    gp << "plot ";
    for (size_t k = 0; k < with_curve.size(); ++k) {
      const size_t i = with_curve[k];
      gp << (k ? ", \\\n     " : "") << gp_string((out / ("loss_" + std::to_string(i) + ".dat")).string())
         << " using " << xcol << ":3 with linespoints lw 2 pt 7 ps 0.6 title " << gp_string(short_label(runs[i]));
    }
    gp << "\n";
  };
  loss_plot("loss_vs_step.png", "1", "step");
  loss_plot("loss_vs_tokens.png", "2", "tokens");
  const std::string runs_dat = gp_string((out / "runs.dat").string());
  gp << "set output " << gp_string((out / "tokens_per_s.png").string()) << "\n"
     << "set title 'median tokens/s per run'\nset xlabel ''\nset ylabel 'tokens/s'\nunset key\n"
     << "set style fill solid 0.7\nset boxwidth 0.6\nset xtics rotate by -20 left\nset yrange [0:*]\n"
     << "set xrange [-0.5:" << std::max<size_t>(1, with_steps.size()) << "-0.5]\n"
     << "plot " << runs_dat << " using 1:2:xtic(5) with boxes lc rgb '#4477aa'\n";
  gp << "set output " << gp_string((out / "memory_per_rank.png").string()) << "\n"
     << "set title 'memory per rank (rank 0)'\nset ylabel 'MiB'\nset key inside left top\n"
     << "set boxwidth 0.35\n"
     << "plot " << runs_dat << " using ($1-0.18):3 with boxes lc rgb '#4477aa' title 'model states', \\\n     "
     << runs_dat << " using ($1+0.18):4:xtic(5) with boxes lc rgb '#ee6677' title 'peak RSS'\n";
  gp << "unset output\n";
  gp.close();

  const std::string log = (out / "gnuplot.log").string();
  const std::string cmd = "'" + gnuplot + "' '" + gp_path + "' >'" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0)
    throw RuntimeError("gnuplot failed (exit " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc) + ") on " +
                       gp_path + ": " + read_text(log));
  std::vector<std::string> pngs;
  for (const char* f : {"loss_vs_step.png", "loss_vs_tokens.png", "tokens_per_s.png", "memory_per_rank.png"})
    pngs.push_back((out / f).string());
  return pngs;
}

int run_report(const std::vector<std::string>& dirs, const std::string& plots_dir, const std::string& csv_path) {
  if (dirs.empty()) throw ConfigError("zerotrain report: give one or more run or sweep folders");
  std::vector<RunSummary> runs;
  for (const auto& d : dirs)
    for (const auto& run : find_run_dirs(d)) runs.push_back(summarize_run(run));
  std::fputs(report_markdown(runs).c_str(), stdout);
  const fs::path csv = csv_path.empty() ? fs::path(dirs.front()) / "report.csv" : fs::path(csv_path);
  {
    std::ofstream f(csv);
    f << report_csv(runs);
    if (!f) throw RuntimeError("zerotrain report: cannot write " + csv.string());
  }
  std::printf("\nwrote %s\n", csv.string().c_str());
  if (!plots_dir.empty()) {
    const std::string gnuplot = find_gnuplot();
    if (gnuplot.empty()) {
      std::printf("no plots: gnuplot is not on PATH (install gnuplot-nox); the table above is complete\n");
    } else {
      for (const auto& p : write_report_plots(runs, plots_dir, gnuplot)) std::printf("wrote %s\n", p.c_str());
    }
  }
  return kExitOk;
}

}  // namespace zt
