#pragma once
// Gloo for device buffers. NCCL cannot put two ranks on one GPU, so ranks sharing a GPU (and any run that asks for
// gloo on the GPU) reduce device buffers through a host group: each collective copies its input from the device
// into a pinned host buffer, runs on the host group, and wait() copies the result back. The copies go through a
// DeviceCopier, so the staging logic is the same (and tested on CPU) whatever the device is.
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/comm/process_group.h"

namespace zt {

// Moves bytes between a device and pinned host memory, in order on one stream of its own.
class DeviceCopier {
 public:
  virtual ~DeviceCopier() = default;
  virtual void* alloc_host(size_t bytes) = 0;  // pinned (page-locked) where the device needs it for async copies
  virtual void free_host(void* p) = 0;
  // Both enqueue on the copier's stream after the work already queued on the device for the calling thread.
  virtual void to_host(void* host, const void* device, size_t bytes) = 0;
  virtual void to_device(void* device, const void* host, size_t bytes) = 0;
  virtual void synchronize() = 0;  // until every copy enqueued so far has finished
  virtual std::string name() const = 0;
};

// Wraps host_group (Gloo); every buffer passed to the result is a device buffer. Staging buffers are pinned, kept
// and reused (one per collective in flight), so a steady training step allocates none.
std::unique_ptr<ProcessGroup> make_host_staged_process_group(std::unique_ptr<ProcessGroup> host_group,
                                                             std::shared_ptr<DeviceCopier> copier);

}  // namespace zt
