#pragma once
// Errors are exceptions carrying context; main() turns them into a message and an exit code.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

namespace zt {

// Exit codes of the zerotrain binary.
enum ExitCode : int { kExitOk = 0, kExitRuntime = 1, kExitUsage = 2 };

// Base of every zerotrain error. exit_code() says how main() ends the process.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, int exit_code = kExitRuntime)
      : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// A bad config file, a bad override or a bad CLI argument: detected before any rank starts, exit 2.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what, kExitUsage) {}
};

// Anything that fails while running (I/O, data, communication, numerics): exit 1.
class RuntimeError : public Error {
 public:
  explicit RuntimeError(const std::string& what) : Error(what, kExitRuntime) {}
};

// The body of a program's main(): what run() returns, or for an error that escapes it "NAME: error: MESSAGE" on
// stderr (after what stdout holds so far) and the error's exit code.
template <class Run>
int run_main(const char* name, Run&& run) {
  try {
    return run();
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return kExitRuntime;
  }
}

}  // namespace zt
