#include "engine/runtime/sweep.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"
#include "engine/runtime/markdown_table.h"
#include "launcher/launcher.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

volatile sig_atomic_t g_stop_signal = 0;
volatile pid_t g_child_pid = 0;

void on_stop_signal(int sig) {
  g_stop_signal = sig;
  const pid_t child = g_child_pid;
  if (child > 0) ::kill(child, sig);  // async-signal-safe
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_json_atomic(const fs::path& p, const nlohmann::json& j) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) throw RuntimeError("sweep: cannot write " + tmp.string());
  }
  fs::rename(tmp, p);
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw RuntimeError("sweep: socket() failed while picking a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw RuntimeError("sweep: cannot bind a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The final train loss in a metrics file, or "" when it has no step.
std::string final_loss(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::string line, loss;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("type", "") == "step" && j.contains("loss") && j["loss"].is_number()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f", j["loss"].get<double>());
      loss = buf;
    }
  }
  return loss;
}

// Starts argv with stdout and stderr appended to log and waits for it; SIGINT/SIGTERM received meanwhile are
// forwarded to it (see on_stop_signal). Returns the wait status.
int run_child(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw RuntimeError("sweep: cannot open " + log.string() + ": " + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw RuntimeError("sweep: fork failed");
  }
  if (pid == 0) {
    // Its own process group: a terminal's Ctrl-C reaches the sweep only, which forwards it exactly once.
    ::setpgid(0, 0);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execv(cargv[0], cargv.data());
    const char msg[] = "zerotrain: error: sweep: cannot execute the zerotrain binary\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(log_fd);
  g_child_pid = pid;
  if (g_stop_signal) ::kill(pid, g_stop_signal);  // arrived between the check and the fork
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      g_child_pid = 0;
      throw RuntimeError(std::string("sweep: waitpid failed: ") + std::strerror(errno));
    }
  }
  g_child_pid = 0;
  return status;
}

}  // namespace

SweepAxis parse_sweep_axis(const std::string& grid) {
  const size_t eq = grid.find('=');
  SweepAxis axis;
  if (eq == std::string::npos || eq == 0) throw ConfigError("--grid: expected key.path=v1,v2,..., got '" + grid + "'");
  axis.key = grid.substr(0, eq);
  const std::string list = grid.substr(eq + 1);
  int depth = 0;
  bool quoted = false;
  std::string cur;
  for (size_t i = 0; i <= list.size(); ++i) {
    const char c = i < list.size() ? list[i] : ',';
    if (i == list.size() || (c == ',' && depth == 0 && !quoted)) {
      if (cur.empty()) throw ConfigError("--grid " + axis.key + ": empty value in '" + list + "'");
      axis.values.push_back(cur);
      cur.clear();
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (!quoted && (c == '[' || c == '{')) depth++;
    if (!quoted && (c == ']' || c == '}')) depth--;
    cur += c;
  }
  return axis;
}

std::vector<std::vector<std::string>> sweep_points(const std::vector<SweepAxis>& axes) {
  std::vector<std::vector<std::string>> points{{}};
  for (const auto& axis : axes) {
    std::vector<std::vector<std::string>> next;
    for (const auto& p : points)
      for (const auto& v : axis.values) {
        auto q = p;
        q.push_back(axis.key + "=" + v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  return points;
}

std::string sweep_run_name(const std::vector<std::string>& overrides) {
  std::string name;
  for (const auto& o : overrides) name += (name.empty() ? "" : "__") + o;
  if (name.empty()) name = "base";
  std::string safe;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '=' || c == '+' || c == '-';
    safe += ok ? c : '_';
  }
  if (safe[0] == '.') safe[0] = '_';  // never "." or ".." or a hidden folder
  if (safe.size() > 120) {
    char hash[20];
    std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(name));
    safe = safe.substr(0, 100) + "__" + hash;
  }
  return safe;
}

std::string last_error_line(const std::string& log_text) {
  const std::string marker = "zerotrain: error: ";
  std::istringstream in(log_text);
  std::string line, last;
  while (std::getline(in, line)) {
    const size_t at = line.find(marker);
    if (at != std::string::npos) last = line.substr(at + marker.size());
  }
  return last;
}

int run_sweep(const SweepOptions& o) {
  if (o.config_path.empty()) throw ConfigError("zerotrain sweep: missing --config FILE");
  if (o.out_dir.empty()) throw ConfigError("zerotrain sweep: missing --out DIR");
  if (o.grids.empty()) throw ConfigError("zerotrain sweep: give at least one --grid key.path=v1,v2,...");
  std::vector<SweepAxis> axes;
  for (const auto& g : o.grids) axes.push_back(parse_sweep_axis(g));
  // A base config that does not parse fails every run the same way: say so once, before starting any.
  parse_config_file(o.config_path, o.base_overrides);
  const std::string exe = o.executable.empty() ? self_executable() : o.executable;
  const fs::path out = o.out_dir;
  fs::create_directories(out);

  const auto points = sweep_points(axes);
  std::vector<std::string> names;
  for (const auto& p : points) names.push_back(sweep_run_name(p));
  write_json_atomic(out / "sweep.json", {{"config", fs::absolute(o.config_path).string()},
                                         {"overrides", o.base_overrides},
                                         {"grids", o.grids},
                                         {"nproc_per_node", o.nproc_per_node},
                                         {"runs", names}});

  struct sigaction sa{}, old_int{}, old_term{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  g_stop_signal = 0;

  int failed = 0;
  bool interrupted = false;
  for (size_t i = 0; i < points.size() && !g_stop_signal; ++i) {
    const fs::path dir = out / names[i];
    const fs::path status_path = dir / "status.json";
    if (fs::exists(status_path)) {
      nlohmann::json st = nlohmann::json::parse(read_text(status_path), nullptr, false);
      if (st.is_object() && st.value("state", "") == "finished") {
        std::printf("sweep: [%zu/%zu] %s: finished before, skipped\n", i + 1, points.size(), names[i].c_str());
        continue;
      }
    }
    // A failed, interrupted or unfinished run starts again from nothing.
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir);

    std::vector<std::string> overrides = o.base_overrides;
    overrides.insert(overrides.end(), points[i].begin(), points[i].end());
    overrides.push_back("train.save_dir=" + dir.string());
    overrides.push_back("train.metrics_file=" + (dir / "metrics.jsonl").string());
    std::vector<std::string> argv{exe, "--config", o.config_path};
    argv.insert(argv.end(), overrides.begin(), overrides.end());
    if (o.nproc_per_node > 0) argv.insert(argv.end(), {"--nproc_per_node", std::to_string(o.nproc_per_node)});
    if (o.nnodes > 0) argv.insert(argv.end(), {"--nnodes", std::to_string(o.nnodes)});
    if (!o.master_addr.empty()) argv.insert(argv.end(), {"--master_addr", o.master_addr});
    const int world = std::max(1, o.nproc_per_node) * std::max(1, o.nnodes);
    if (o.master_port > 0)
      argv.insert(argv.end(), {"--master_port", std::to_string(o.master_port)});
    else if (world > 1 || o.nproc_per_node == 0)
      argv.insert(argv.end(), {"--master_port", std::to_string(free_tcp_port())});

    // The resolved config, when it resolves; when it does not, the run's own exit 2 says why.
    try {
      Config cfg = parse_config_file(o.config_path, overrides);
      std::ofstream(dir / "config.json") << config_to_json(cfg).dump(2) << "\n";
    } catch (const Error&) {
    }
    nlohmann::json status = {{"name", names[i]},         {"overrides", points[i]}, {"state", "running"},
                             {"exit_code", nullptr},     {"error", ""},            {"wall_s", nullptr},
                             {"started_at", utc_now()},  {"command", argv}};
    write_json_atomic(status_path, status);
    std::printf("sweep: [%zu/%zu] %s: running\n", i + 1, points.size(), names[i].c_str());
    std::fflush(stdout);

    const auto t0 = std::chrono::steady_clock::now();
    const int wait_status = run_child(argv, dir / "log.txt");
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
    status["exit_code"] = code;
    status["wall_s"] = wall;
    status["finished_at"] = utc_now();
    if (g_stop_signal) {
      status["state"] = "interrupted";
      status["error"] = std::string("interrupted by ") + (g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
      interrupted = true;
    } else if (code == 0) {
      status["state"] = "finished";
    } else {
      status["state"] = "failed";
      std::string err = last_error_line(read_text(dir / "log.txt"));
      if (err.empty()) err = "exited with code " + std::to_string(code) + " (see log.txt)";
      status["error"] = err;
      failed++;
    }
    write_json_atomic(status_path, status);
    std::printf("sweep: [%zu/%zu] %s: %s in %.1f s%s%s\n", i + 1, points.size(), names[i].c_str(),
                status["state"].get<std::string>().c_str(), wall, code == 0 ? "" : ": ",
                code == 0 ? "" : status["error"].get<std::string>().c_str());
    std::fflush(stdout);
  }
  if (g_stop_signal) interrupted = true;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);

  std::vector<std::vector<std::string>> cells{{"run", "state", "exit", "wall s", "final loss", "error"}};
  for (const auto& name : names) {
    const fs::path dir = out / name;
    nlohmann::json st = fs::exists(dir / "status.json")
                            ? nlohmann::json::parse(read_text(dir / "status.json"), nullptr, false)
                            : nlohmann::json::object();
    if (!st.is_object()) st = nlohmann::json::object();
    char wall[32] = "";
    if (st.contains("wall_s") && st["wall_s"].is_number())
      std::snprintf(wall, sizeof wall, "%.1f", st["wall_s"].get<double>());
    std::string err = st.value("error", "");
    if (err.size() > 80) err = err.substr(0, 77) + "...";
    cells.push_back({name, st.value("state", "not started"),
                     st.contains("exit_code") && st["exit_code"].is_number() ? std::to_string(st["exit_code"].get<int>())
                                                                              : "",
                     wall, final_loss(dir / "metrics.jsonl"), err});
  }
  std::printf("\n%s", markdown_table(cells).c_str());
  if (interrupted) {
    std::printf("sweep interrupted: run the same command again to resume (finished runs are skipped)\n");
    return 130;
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace zt
