#pragma once
// Joining the job: read who we are from the environment, meet at the rendezvous store, build the process group.
#include <memory>

#include "engine/comm/process_group.h"
#include "engine/comm/store.h"
#include "launcher/worker_env.h"

namespace zt {

struct Distributed {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::shared_ptr<Store> store;
  std::unique_ptr<ProcessGroup> group;
};

// Reads the worker environment (see launcher/worker_env.h). With none: a world of one with an in-process store.
// Otherwise rank 0 serves the store at MASTER_ADDR:MASTER_PORT, every rank registers its WORLD_SIZE there (a
// mismatch is reported by every rank) and the process group of comm.backend is built. Every step is bounded by
// timeout_s; failures throw RuntimeError naming the address/port. buffers: where the collectives' buffers will
// live (see make_process_group for what each backend then means).
Distributed init_distributed(CommBackend backend, double timeout_s, Device buffers = Device::Cpu);

// The same, from an explicit WorkerEnv (tests, benches).
Distributed init_distributed(const WorkerEnv& env, CommBackend backend, double timeout_s,
                             Device buffers = Device::Cpu);

}  // namespace zt
