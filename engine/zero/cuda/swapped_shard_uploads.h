#pragma once
// offload_param.device nvme on the GPU (stage 3): each unit's shard is read from ParamSwapper's swap file into one of
// its buffers and uploaded from there to the device on a copy stream. A shard stays pinned in its buffer until its
// upload has finished; the buffers are few (offload_param.buffer_count), so before a new shard is taken, shards
// whose uploads are known to be done go back first, and if the new one still finds no buffer, the oldest pinned
// shard's upload is waited for and it goes back. Plain C++ over an UploadEvents interface (the CUDA events in the
// engine, a fake in the tests), so the order is tested on the CPU.
#include <cstddef>
#include <deque>
#include <vector>

#include "engine/zero/param_swapper.h"

namespace zt {

// Per unit, the upload queued from its shard's buffer.
class UploadEvents {
 public:
  virtual ~UploadEvents() = default;
  virtual bool done(int unit) = 0;  // without blocking
  virtual void wait(int unit) = 0;  // blocks the host until it is done
};

class SwappedShardUploads {
 public:
  SwappedShardUploads(ParamSwapper& swapper, UploadEvents& uploads, size_t units);

  // The unit's shard in host memory (read from the swap file if needed), pinned for the upload the caller queues
  // next; RuntimeError from the swapper if no buffer can be freed.
  const void* take(int unit);
  // The unit's upload has finished (or is waited for here): its buffer goes back. No-op when not pinned.
  void release(int unit);
  void release_all();
  bool pinned(int unit) const { return pinned_[static_cast<size_t>(unit)]; }

 private:
  ParamSwapper& swapper_;
  UploadEvents& uploads_;
  std::vector<bool> pinned_;
  std::deque<int> order_;  // pinned units, oldest first
};

}  // namespace zt
