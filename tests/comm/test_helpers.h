#pragma once
// Helpers for tests that run the comm worker and the launcher as separate processes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace zt::test {

// A port nothing listens on right now (bind port 0, read it back, release it), so concurrent tests don't collide.
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct RunResult {
  int exit_code = -1;  // the shell's exit status
  std::string output;  // stdout and stderr together
  double seconds = 0;
};

// Runs a /bin/sh command line, capturing stdout+stderr.
inline RunResult run_shell(const std::string& cmd) {
  RunResult r;
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

inline std::string program(const std::string& name) { return std::string(ZT_BINARY_DIR) + "/tests/" + name; }

// "zt_launch --nproc_per_node N --master_port P -- zt_comm_worker ARGS" with the comm timeout in the environment.
inline std::string launch_cmd(int nproc, int port, const std::string& worker_args, double timeout_s = 20) {
  return "ZT_TEST_TIMEOUT_S=" + std::to_string(timeout_s) + " " + program("zt_launch") +
         " --nproc_per_node " + std::to_string(nproc) + " --master_port " + std::to_string(port) + " -- " +
         program("zt_comm_worker") + " " + worker_args;
}

}  // namespace zt::test
