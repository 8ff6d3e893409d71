// Drives launch_workers from the command line, as main will once its CLI is wired:
//   zt_launch [--nproc_per_node N] [--nnodes N] [--node_rank R] [--master_addr A] [--master_port P] -- prog args...
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "launcher/launcher.h"

int main(int argc, char** argv) {
  try {
    zt::LaunchOptions o;
    std::vector<std::string> worker;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--") {
        for (++i; i < argc; ++i) worker.push_back(argv[i]);
        break;
      }
      if (i + 1 >= argc) throw zt::ConfigError("missing value after " + a);
      std::string v = argv[++i];
      if (a == "--nproc_per_node") o.nproc_per_node = std::stoi(v);
      else if (a == "--nnodes") o.nnodes = std::stoi(v);
      else if (a == "--node_rank") o.node_rank = std::stoi(v);
      else if (a == "--master_addr") o.master_addr = v;
      else if (a == "--master_port") o.master_port = std::stoi(v);
      else throw zt::ConfigError("unknown option " + a);
    }
    return zt::launch_workers(o, worker);
  } catch (const zt::Error& e) {
    std::fprintf(stderr, "zt_launch: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zt_launch: error: %s\n", e.what());
    return 2;
  }
}
