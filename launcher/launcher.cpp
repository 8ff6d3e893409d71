// launch_workers: fork/exec the local workers, relay their output line by line with a rank prefix, and stop the
// whole node when one of them fails or the launcher is told to stop. One poll loop does all of it, so no threads.
#include "launcher/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "engine/base/error.h"

extern char** environ;

namespace zt {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe_write = -1;

void on_stop_signal(int sig) {
  if (g_signal_pipe_write >= 0) {
    char c = static_cast<char>(sig);
    ssize_t ignored = ::write(g_signal_pipe_write, &c, 1);
    (void)ignored;
  }
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::string> visible_gpu_ids() {
  if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES")) return split_list(cvd);
  std::vector<std::string> ids;
  if (DIR* d = ::opendir("/dev")) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 6 && n.compare(0, 6, "nvidia") == 0 && n.find_first_not_of("0123456789", 6) == std::string::npos)
        ids.push_back(n.substr(6));
    }
    ::closedir(d);
  }
  std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) { return std::stoi(a) < std::stoi(b); });
  return ids;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    case SIGILL: return "SIGILL";
    default: return "?";
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + signal_name(WTERMSIG(status)) + ")";
  return "ended with status " + std::to_string(status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// One output stream of one worker, relayed line by line with its prefix.
struct Stream {
  int fd = -1;
  FILE* out = nullptr;
  std::string prefix;
  std::string pending;

  void emit(const std::string& line) {
    // Workers that log through spdlog already start their lines with the same "[rank R] "; don't say it twice.
    bool has_prefix = line.compare(0, prefix.size(), prefix) == 0;
    std::string text = (has_prefix ? "" : prefix) + line + "\n";
    std::fwrite(text.data(), 1, text.size(), out);
    std::fflush(out);
  }
  // Reads what is there; false at end of stream.
  bool pump() {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) {
      if (!pending.empty()) emit(pending);
      pending.clear();
      ::close(fd);
      fd = -1;
      return false;
    }
    pending.append(buf, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      emit(pending.substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
    return true;
  }
};

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;
  Stream out, err;
};

// The environment of one worker: ours, with the job's variables replacing any inherited ones.
std::vector<std::string> worker_environment(const std::map<std::string, std::string>& vars) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && vars.count(kv.substr(0, eq))) continue;
    env.push_back(kv);
  }
  for (const auto& [k, v] : vars) env.push_back(k + "=" + v);
  return env;
}

void log_launcher(const std::string& msg) {
  std::string line = "zerotrain launcher: " + msg + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

std::string self_executable() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw RuntimeError(std::string("cannot resolve /proc/self/exe: ") + std::strerror(errno));
  return std::string(buf, static_cast<size_t>(n));
}

int visible_gpu_count() { return static_cast<int>(visible_gpu_ids().size()); }

int default_nproc_per_node(int config_world_size, int nnodes) {
  if (int gpus = visible_gpu_count(); gpus > 0) return gpus;
  if (config_world_size > 0) {
    if (nnodes < 1 || config_world_size % nnodes != 0)
      throw ConfigError("world_size " + std::to_string(config_world_size) + " does not divide over " +
                        std::to_string(nnodes) + " nodes; give --nproc_per_node");
    return config_world_size / nnodes;
  }
  return 1;
}

int launch_workers(const LaunchOptions& o, const std::vector<std::string>& worker_argv) {
  if (o.nproc_per_node < 1) throw ConfigError("--nproc_per_node must be at least 1, got " + std::to_string(o.nproc_per_node));
  if (o.nnodes < 1) throw ConfigError("--nnodes must be at least 1, got " + std::to_string(o.nnodes));
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw ConfigError("--node_rank " + std::to_string(o.node_rank) + " is outside 0.." + std::to_string(o.nnodes - 1));
  if (o.master_port < 1 || o.master_port > 65535)
    throw ConfigError("--master_port " + std::to_string(o.master_port) + " is not a TCP port");
  if (o.master_addr.empty()) throw ConfigError("--master_addr is empty");
  if (worker_argv.empty()) throw ConfigError("launch_workers: no worker command");

  const int nproc = o.nproc_per_node, world = o.nproc_per_node * o.nnodes;
  const std::vector<std::string> gpus = visible_gpu_ids();

  int sig_pipe[2];
  if (::pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) throw RuntimeError("launcher: pipe2 failed");
  g_signal_pipe_write = sig_pipe[1];
  struct sigaction sa{}, old_int{}, old_term{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<char*> argv_c;
  for (const auto& a : worker_argv) argv_c.push_back(const_cast<char*>(a.c_str()));
  argv_c.push_back(nullptr);

  std::vector<Worker> workers(static_cast<size_t>(nproc));
  const pid_t launcher_pid = ::getpid();
  std::string start_error;
  for (int local = 0; local < nproc; ++local) {
    Worker& w = workers[static_cast<size_t>(local)];
    w.rank = o.node_rank * nproc + local;
    std::map<std::string, std::string> vars = {
        {"RANK", std::to_string(w.rank)},         {"LOCAL_RANK", std::to_string(local)},
        {"WORLD_SIZE", std::to_string(world)},    {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
        {"GROUP_RANK", std::to_string(o.node_rank)}, {"MASTER_ADDR", o.master_addr},
        {"MASTER_PORT", std::to_string(o.master_port)}, {"ZT_LAUNCHED", "1"}};
    if (!gpus.empty()) vars["CUDA_VISIBLE_DEVICES"] = gpus[static_cast<size_t>(local) % gpus.size()];
    // Built before fork: the child may only call async-signal-safe functions if the launcher has threads.
    std::vector<std::string> env = worker_environment(vars);
    std::vector<char*> env_c;
    for (auto& e : env) env_c.push_back(e.data());
    env_c.push_back(nullptr);

    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
      start_error = std::string("pipe2 failed: ") + std::strerror(errno);
      break;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      start_error = std::string("fork failed: ") + std::strerror(errno);
      ::close(out_pipe[0]); ::close(out_pipe[1]); ::close(err_pipe[0]); ::close(err_pipe[1]);
      break;
    }
    if (pid == 0) {
      // A worker must not outlive its launcher (killed with SIGKILL, say): the kernel kills it when we die.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher_pid) ::_exit(1);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::dup2(out_pipe[1], STDOUT_FILENO);
      ::dup2(err_pipe[1], STDERR_FILENO);
      ::execve(argv_c[0], argv_c.data(), env_c.data());
      const char* msg = "zerotrain launcher: cannot execute the worker program: ";
      ssize_t ignored = ::write(STDERR_FILENO, msg, std::strlen(msg));
      ignored = ::write(STDERR_FILENO, std::strerror(errno), std::strlen(std::strerror(errno)));
      ignored = ::write(STDERR_FILENO, "\n", 1);
      (void)ignored;
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    w.pid = pid;
    w.running = true;
    std::string prefix = "[rank " + std::to_string(w.rank) + "] ";
    w.out = Stream{out_pipe[0], stdout, prefix, ""};
    w.err = Stream{err_pipe[0], stderr, prefix, ""};
  }

  auto running_count = [&] {
    int n = 0;
    for (auto& w : workers) n += w.running ? 1 : 0;
    return n;
  };
  auto signal_all = [&](int sig) {
    for (auto& w : workers)
      if (w.running) ::kill(w.pid, sig);
  };

  bool stopping = false;
  Clock::time_point kill_at{};
  int result = 0;
  if (!start_error.empty()) {
    log_launcher("could not start every worker (" + start_error + "); stopping the " +
                 std::to_string(running_count()) + " started");
    stopping = true;
    result = 1;
    signal_all(SIGTERM);
    kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_period_s * 1000));
  }

  auto any_stream_open = [&] {
    for (auto& w : workers)
      if (w.out.fd >= 0 || w.err.fd >= 0) return true;
    return false;
  };
  Clock::time_point all_reaped_at{};
  while (running_count() > 0 || any_stream_open()) {
    std::vector<pollfd> fds{{sig_pipe[0], POLLIN, 0}};
    std::vector<Stream*> streams;
    for (auto& w : workers)
      for (Stream* s : {&w.out, &w.err})
        if (s->fd >= 0) {
          fds.push_back({s->fd, POLLIN, 0});
          streams.push_back(s);
        }
    int r = ::poll(fds.data(), fds.size(), 50);
    if (r > 0) {
      for (size_t i = 1; i < fds.size(); ++i)
        if (fds[i].revents) streams[i - 1]->pump();
      if (fds[0].revents & POLLIN) {
        char sigs[16];
        ssize_t n = ::read(sig_pipe[0], sigs, sizeof(sigs));
        if (n > 0) {
          int sig = sigs[n - 1];
          log_launcher(std::string("received ") + signal_name(sig) + "; forwarding it to " +
                       std::to_string(running_count()) + " workers");
          signal_all(sig);
          if (!stopping) {
            stopping = true;
            result = 128 + sig;
            kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_period_s * 1000));
          }
        }
      }
    }
    for (auto& w : workers) {
      if (!w.running) continue;
      int status = 0;
      pid_t p = ::waitpid(w.pid, &status, WNOHANG);
      if (p != w.pid) continue;
      w.running = false;
      w.status = status;
      bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping) {
        stopping = true;
        result = exit_code_of(status);
        int others = running_count();
        log_launcher("rank " + std::to_string(w.rank) + " " + describe_status(status) + "; stopping the other " +
                     std::to_string(others) + (others == 1 ? " rank" : " ranks") + " on this node");
        signal_all(SIGTERM);
        kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_period_s * 1000));
      }
    }
    if (stopping && running_count() > 0 && Clock::now() >= kill_at) {
      log_launcher(std::to_string(running_count()) + " workers still running after the grace period; sending SIGKILL");
      signal_all(SIGKILL);
      kill_at = Clock::now() + std::chrono::hours(1);
    }
    // A grandchild a worker left behind may hold its pipe open; do not wait for it forever.
    if (running_count() == 0) {
      if (all_reaped_at == Clock::time_point{}) all_reaped_at = Clock::now();
      if (Clock::now() - all_reaped_at > std::chrono::seconds(2)) break;
    }
  }
  for (auto& w : workers)
    for (Stream* s : {&w.out, &w.err})
      if (s->fd >= 0) ::close(s->fd);
  if (result != 0) {
    // The first failure noticed need not be the cause: a rank that throws closes its sockets before it exits, so
    // its peers' connection errors can be reaped first. The full list shows every rank's end.
    std::string summary;
    for (auto& w : workers) {
      if (w.pid < 0) continue;
      summary += (summary.empty() ? "" : "; ") + std::string("rank ") + std::to_string(w.rank) + " " +
                 describe_status(w.status);
    }
    log_launcher("workers ended: " + summary);
  }

  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  g_signal_pipe_write = -1;
  ::close(sig_pipe[0]);
  ::close(sig_pipe[1]);
  return result;
}

}  // namespace zt
