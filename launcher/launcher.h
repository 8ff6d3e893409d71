#pragma once
// The process launcher (torchrun's job): start nproc_per_node workers on this node with the rendezvous variables
// set, prefix their output with "[rank R]", and end all of them as soon as one fails.
#include <string>
#include <vector>

namespace zt {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double timeout_s = 300.0;     // comm.timeout_s: the workers enforce it on rendezvous and collectives
  double grace_period_s = 3.0;  // between SIGTERM and SIGKILL when stopping the rest
};

// Starts nproc_per_node copies of worker_argv (worker_argv[0] is the program path; normally /proc/self/exe
// resolved, see self_executable()) with RANK = node_rank*nproc_per_node + local, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ZT_LAUNCHED=1 and, where GPUs are visible, CUDA_VISIBLE_DEVICES with
// one GPU each. Returns 0 when every worker exits 0; otherwise the first failing worker's exit code (128+signal when
// killed) after stopping the others (SIGTERM, then SIGKILL after the grace period). SIGINT/SIGTERM sent to the
// launcher are forwarded to every worker. Throws ConfigError for bad options, RuntimeError when a worker cannot
// be started.
int launch_workers(const LaunchOptions& options, const std::vector<std::string>& worker_argv);

// The resolved path of the running executable (/proc/self/exe).
std::string self_executable();

// GPUs this process may use: the entries of CUDA_VISIBLE_DEVICES when set, else the /dev/nvidiaN devices; no CUDA
// call (the launcher must not initialise CUDA before forking).
int visible_gpu_count();

// The number of workers to start on this node when the user gave none: the visible GPUs, else the config's
// world_size divided over nnodes, else 1.
int default_nproc_per_node(int config_world_size, int nnodes);

}  // namespace zt
