// The zerotrain binary: parses the command line and config, then launches or runs a worker. Every error ends here
// as one message and an exit code (0 ok, 1 runtime failure, 2 bad usage or config).
#include <cstdio>
#include <exception>

#include "engine/base/error.h"

int main(int argc, char** argv) {
  try {
    std::printf("zerotrain %s\n", ZT_VERSION);
    return zt::kExitOk;
  } catch (const zt::Error& e) {
    std::fprintf(stderr, "zerotrain: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zerotrain: error: %s\n", e.what());
    return zt::kExitRuntime;
  }
}
