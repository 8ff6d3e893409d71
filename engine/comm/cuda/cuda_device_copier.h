#pragma once
// The DeviceCopier for CUDA: pinned host buffers (cudaHostAlloc) and asynchronous copies on a copy stream of its
// own that first waits for the work queued on the compute stream, so staged collectives see finished results.
#include <memory>

#include "engine/comm/host_staged_process_group.h"

namespace zt::cuda {

// compute_stream: a cudaStream_t as void* (nullptr: the legacy default stream). Uses the current device.
std::shared_ptr<DeviceCopier> make_cuda_device_copier(void* compute_stream = nullptr);

}  // namespace zt::cuda
