#pragma once
// The NCCL backend (built only with CUDA). Buffers are CUDA device pointers; collectives run on a dedicated
// communication stream that first waits for the work already queued on the calling thread's default stream, and
// wait() blocks the host until the collective finished (or throws after the timeout, aborting the communicator).
#include <memory>

#include "engine/comm/process_group.h"

namespace zt::cuda {

int nccl_visible_device_count();

// The ncclUniqueId travels through store (rank 0 sets it, the others wait for it). Uses the current CUDA device.
std::unique_ptr<ProcessGroup> make_nccl_process_group(int rank, int world_size, std::shared_ptr<Store> store,
                                                      double timeout_s);

}  // namespace zt::cuda
