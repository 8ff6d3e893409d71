#pragma once
// The order of work of ZeRO-Offload's step on the GPU path, as plain C++ so that it is tested on the CPU against a
// fake device: the rank's gradient partition comes from the device to the host chunk by chunk, the CPU updates
// chunk k while the download of the chunks after it is still in flight, and each updated chunk goes back to the
// device while the CPU works on the next one. The copies are queued, in order, on one copy stream (ChunkCopier);
// the host only ever blocks on the download of the chunk it is about to update. The update of a chunk is the CPU
// path's vectorised CPU Adam (HostAdamPartition), so offloading on the GPU gives the CPU path's updates.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/optim/optimizer.h"  // DecayRange
#include "engine/zero/nvme_optimizer_state.h"
#include "offload/cpu_adam.h"

namespace zt {

// Asynchronous copies between the device partition and the host partition, executed in the order queued (one
// stream). Chunks are numbered from 0; [begin, end) are element offsets into the partition.
class ChunkCopier {
 public:
  virtual ~ChunkCopier() = default;
  // The device gradient [begin, end) into the host gradient buffer, after everything queued before.
  virtual void queue_download(size_t chunk, size_t begin, size_t end) = 0;
  // Blocks the host until chunk's download has landed in host memory.
  virtual void wait_download(size_t chunk) = 0;
  // The host's updated weights [begin, end) to the device, after everything queued before.
  virtual void queue_upload(size_t chunk, size_t begin, size_t end) = 0;
  // Called once after the last upload is queued: the device's later work must come after every copy (the device
  // side waits; the host need not).
  virtual void finish() = 0;
};

// n elements in chunks of `chunk` (the last one shorter).
struct ChunkSplit {
  size_t n = 0, chunk = 1;
  size_t count() const { return n == 0 ? 0 : (n + chunk - 1) / chunk; }
  size_t begin(size_t k) const { return k * chunk; }
  size_t end(size_t k) const { return k * chunk + chunk < n ? k * chunk + chunk : n; }
};

// One step over split: downloads are queued `lookahead` (>= 1) chunks ahead of the chunk being updated;
// update(begin, end) runs on the host once that chunk's download has landed; its upload is queued right after.
// Every element is downloaded, updated and uploaded exactly once. Throws RuntimeError for chunk 0 or lookahead 0.
void run_chunk_pipeline(const ChunkSplit& split, size_t lookahead, ChunkCopier& copier,
                        const std::function<void(size_t begin, size_t end)>& update);

// The same step with the optimizer state in NVMe swap files (offload_optimizer.device nvme): the chunks are the
// swap files' sub-groups, whose state NvmeOptimizerState streams through its buffer sets while the gradient chunks
// come down from the device (queued `lookahead` chunks ahead of the sub-group being updated, each waited for only
// once its state has been read). host_grads (the partition's n floats) receives the downloads; once a sub-group is
// updated its gradient slot is free, so its new weights are copied there and uploaded from there. updated (if
// given) sees each updated sub-group first. Errors of the swap files (a deleted file, a full disk) propagate as
// NvmeOptimizerState raises them; copies already queued are the caller's to drain.
void run_nvme_chunk_pipeline(NvmeOptimizerState& state, size_t lookahead, ChunkCopier& copier, float* host_grads,
                             const std::vector<DecayRange>& ranges, const offload::CpuAdamHyper& hyper, int64_t step,
                             const MasterSink& updated = {});

// The host side of the offloaded step: the rank's fp32 master partition, Adam's moments and the buffer its gradient
// is downloaded into, n floats each, in memory the caller owns (pinned on the GPU path).
struct HostAdamPartition {
  float *master = nullptr, *grads = nullptr, *exp_avg = nullptr, *exp_avg_sq = nullptr;
  size_t n = 0;
  std::vector<DecayRange> ranges;  // over the partition, sorted

  // CPU Adam over [begin, end) of the partition: bitwise what one cpu_adam_step over the whole partition gives
  // there, since every element's update depends only on its own values.
  void update(size_t begin, size_t end, const offload::CpuAdamHyper& hyper, int64_t step) const;
  // "master", "exp_avg" or "exp_avg_sq" (the CPU optimizer's checkpoint names); RuntimeError naming anything else.
  float* state(const std::string& name) const;
};

// The decay ranges of a partition restricted to [begin, end) and shifted to start at 0, so that an optimizer run
// over that chunk alone updates it as the run over the whole partition does.
std::vector<DecayRange> ranges_in_chunk(const std::vector<DecayRange>& ranges, size_t begin, size_t end);

}  // namespace zt
