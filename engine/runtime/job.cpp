// One zerotrain invocation: either the launcher (start N workers of this same command line and supervise them) or
// one worker (join the job, train). Which one is decided by the environment a launcher left.
#include "engine/runtime/job.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/comm/distributed.h"
#include "engine/comm/store.h"
#include "engine/runtime/device_choice.h"
#include "engine/runtime/trainer.h"
#include "launcher/launcher.h"
#include "launcher/worker_env.h"

namespace zt {

namespace {

int run_worker(const Config& cfg, const std::optional<WorkerEnv>& env) {
  // Our own launcher prefixes every output line with the rank; under srun/mpirun the logger does it.
  const bool prefixed_by_launcher = env && env->source == "zerotrain";
  if (env) init_logging(prefixed_by_launcher ? 0 : env->rank, prefixed_by_launcher ? 1 : env->world_size);
  // On the GPU, each rank takes its local GPU before any CUDA resource exists; the job's group then serves host
  // buffers (Gloo) and a second one, over the same store, the gradients and parameters on the device.
  const TrainDevice device = choose_train_device(cfg);
  if (device == TrainDevice::Cuda) use_gpu_of_local_rank(env ? env->local_rank : 0);
  const CommBackend host_backend = device == TrainDevice::Cuda ? CommBackend::Gloo : cfg.comm.backend;
  Distributed dist = env ? init_distributed(*env, host_backend, cfg.comm.timeout_s)
                         : init_distributed(host_backend, cfg.comm.timeout_s);
  std::unique_ptr<ProcessGroup> device_pg;
  if (device == TrainDevice::Cuda && dist.world_size > 1)
    device_pg = make_process_group(cfg.comm.backend, dist.rank, dist.world_size,
                                   std::make_shared<PrefixStore>("device_buffers", dist.store), cfg.comm.timeout_s,
                                   Device::Cuda, dist.local_world_size);
  if (cfg.world_size > 0 && cfg.world_size != dist.world_size && dist.rank == 0)
    spdlog::warn("config world_size is {} but the job has {} ranks; training with {}", cfg.world_size,
                 dist.world_size, dist.world_size);
  // The error is printed while this rank's connections are still open: closing them first would make the other
  // ranks fail with "connection closed" and the launcher stop this one before its own cause got out.
  return run_main("zerotrain", [&] {
    Trainer trainer(cfg, *dist.group, device_pg.get());
    TrainSummary s = trainer.run();
    if (dist.rank == 0 && !s.losses.empty())
      spdlog::info("done: {} steps, loss {:.4f} -> {:.4f}", s.steps, s.losses.front(), s.losses.back());
    return static_cast<int>(kExitOk);
  });
}

}  // namespace

int run_job(const Config& cfg, const CliArgs& args) {
  std::optional<WorkerEnv> env = read_worker_env();
  if (env) return run_worker(cfg, env);

  const int nnodes = args.nnodes > 0 ? args.nnodes : 1;
  const int nproc = args.nproc_per_node > 0 ? args.nproc_per_node : default_nproc_per_node(cfg.world_size, nnodes);
  if (nproc * nnodes == 1) return run_worker(cfg, std::nullopt);

  LaunchOptions opt;
  opt.nproc_per_node = nproc;
  opt.nnodes = nnodes;
  opt.node_rank = args.node_rank;
  if (!args.master_addr.empty()) opt.master_addr = args.master_addr;
  if (args.master_port > 0) opt.master_port = args.master_port;
  opt.timeout_s = cfg.comm.timeout_s;
  std::vector<std::string> argv = args.argv;
  if (argv.empty()) throw RuntimeError("run_job: the command line to re-run in the workers is empty");
  argv[0] = self_executable();
  // Workers on one node share its cores: without a limit each would start one OpenMP thread per core and they would
  // spin against each other (torchrun sets OMP_NUM_THREADS for the same reason).
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(nproc)));
    setenv("OMP_NUM_THREADS", threads.c_str(), 1);
    spdlog::info("OMP_NUM_THREADS={} for each of the {} workers (set it to choose otherwise)", threads, nproc);
  }
  spdlog::info("launching {} worker(s) on node {} of {} (master {}:{})", nproc, opt.node_rank, nnodes,
               opt.master_addr, opt.master_port);
  return launch_workers(opt, argv);
}

}  // namespace zt
