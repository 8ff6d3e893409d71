#pragma once
// ZeRO-Infinity's optimizer offload to NVMe: the fp32 master weights of this rank's partition and Adam's exp_avg and
// exp_avg_sq over it live in three swap files under offload_optimizer.nvme_path and pass through memory one
// sub-group (sub_group_size elements) at a time. offload_optimizer.buffer_count (>= 2) buffer sets, each holding one
// sub-group's master, m and v, pipeline the step: while sub-group g is updated (vectorised CPU Adam), the reads of
// g+1 .. g+max(1, k-2) are in flight and (k >= 3) the write-back of g-1 too. With k = 2 the write-back of g-1
// completes before g+1 is read into its buffers. No copy of the master stays in memory: each updated sub-group is
// handed to the caller's sink, which refreshes the working-precision parameters wherever they live.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/optim/optimizer.h"
#include "offload/async_io.h"
#include "offload/cpu_adam.h"
#include "offload/io_file.h"
#include "offload/pinned_buffer_pool.h"

namespace zt {

// Receives master elements [begin, begin + len) of the partition; master points at them and is valid only during
// the call.
using MasterSink = std::function<void(size_t begin, size_t len, const float* master)>;
// Called before sub-group [begin, begin + len) is updated, once its state has been read: the caller makes its
// gradient elements ready there (the GPU path waits for their download from the device).
using GroupReady = std::function<void(size_t begin, size_t len)>;

class NvmeOptimizerState {
 public:
  // n: the partition's elements; master: their initial fp32 values. Creates the swap files, writes the master and
  // zero-fills the Adam state; throws RuntimeError naming nvme_path.
  NvmeOptimizerState(const Config& cfg, size_t n, int rank, const float* master);
  ~NvmeOptimizerState();

  // One Adam/AdamW update of the master with grads[0..n) (ranges as Optimizer::step). Every updated sub-group goes
  // to updated, in order, each element once; ready (if given) is called for each sub-group before its update reads
  // grads there.
  void step(const float* grads, const std::vector<DecayRange>& ranges, const offload::CpuAdamHyper& hyper,
            int64_t step, const MasterSink& updated, const GroupReady& ready = {});
  // The current master through sink, in order, one sub-group at a time (the next one's read in flight).
  void read_master(const MasterSink& sink);
  // Checkpoint access: "master", "exp_avg" or "exp_avg_sq", n floats.
  void read_state(const std::string& name, float* out);
  void write_state(const std::string& name, const float* in);
  const std::string& path(const std::string& name) const;  // the swap file holding it

  double io_wait_seconds() const { return io_wait_s_; }  // accumulated time spent waiting on I/O
  size_t buffer_bytes() const { return pool_->count() * pool_->buffer_bytes(); }
  size_t buffer_sets() const { return sets_.size(); }
  size_t sub_group_elements() const { return group_; }
  size_t size() const { return n_; }

  // The last step's order of events, for tests of the pipeline: ReadIssued/WriteIssued (sub-group, buffer set),
  // UpdateBegin (sub-group, set).
  struct PipelineEvent {
    enum Kind { ReadIssued, UpdateBegin, WriteIssued } kind;
    size_t group;
    size_t set;
  };
  const std::vector<PipelineEvent>& last_step_events() const { return events_; }

 private:
  // What each buffer set holds and each swap file stores, in this order.
  enum Part { Master, ExpAvg, ExpAvgSq, kParts };
  int part(const std::string& name) const;
  void wait(offload::IoHandle& h);
  size_t groups() const { return (n_ + group_ - 1) / group_; }
  size_t len_of(size_t g) const { return std::min(group_, n_ - g * group_); }
  static int64_t offset_of(size_t g, size_t group) { return static_cast<int64_t>(g * group * sizeof(float)); }
  // Writes n floats of src (nullptr: zeros) into the part's file through the buffer sets.
  void write_file(int p, const float* src);

  size_t n_;
  size_t group_;  // elements per sub-group, a multiple of the I/O alignment
  std::unique_ptr<offload::AsyncIO> aio_;
  offload::IoFile files_[kParts];
  std::unique_ptr<offload::PinnedBufferPool> pool_;
  struct BufferSet {
    float* buf[kParts] = {};
    offload::IoHandle read[kParts] = {}, write[kParts] = {};
  };
  std::vector<BufferSet> sets_;
  std::vector<PipelineEvent> events_;
  double io_wait_s_ = 0.0;
};

}  // namespace zt
