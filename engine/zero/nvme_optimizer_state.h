#pragma once
// ZeRO-Infinity's optimizer offload to NVMe: Adam's exp_avg and exp_avg_sq of this rank's partition live in two
// swap files under offload_optimizer.nvme_path and pass through memory one sub-group (sub_group_size elements) at a
// time. offload_optimizer.buffer_count (>= 2) buffer sets, each holding one sub-group's m and v, pipeline the step:
// while sub-group g is updated (vectorised CPU Adam), the reads of g+1 .. g+max(1, k-2) are in flight and (k >= 3)
// the write-back of g-1 too. With k = 2 the write-back of g-1 completes before g+1 is read into its buffers.
#include <cstddef>
#include <cstdint>
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

class NvmeOptimizerState {
 public:
  // n: the partition's elements. Creates and zero-fills the swap files; throws RuntimeError naming nvme_path.
  NvmeOptimizerState(const Config& cfg, size_t n, int rank);
  ~NvmeOptimizerState();

  // One Adam/AdamW update of params[0..n) with grads (ranges as Optimizer::step).
  void step(float* params, const float* grads, const std::vector<DecayRange>& ranges,
            const offload::CpuAdamHyper& hyper, int64_t step);
  // Checkpoint access: "exp_avg" or "exp_avg_sq", n floats.
  void read_state(const std::string& name, float* out);
  void write_state(const std::string& name, const float* in);

  double io_wait_seconds() const { return io_wait_s_; }  // accumulated time step() spent waiting on I/O
  size_t buffer_bytes() const { return pool_->count() * pool_->buffer_bytes(); }
  size_t buffer_sets() const { return sets_.size(); }
  size_t sub_group_elements() const { return group_; }

  // The last step's order of events, for tests of the pipeline: ReadIssued/WriteIssued (sub-group, buffer set),
  // UpdateBegin (sub-group, set).
  struct PipelineEvent {
    enum Kind { ReadIssued, UpdateBegin, WriteIssued } kind;
    size_t group;
    size_t set;
  };
  const std::vector<PipelineEvent>& last_step_events() const { return events_; }

 private:
  offload::IoFile& file(const std::string& name);
  void wait(offload::IoHandle& h);

  size_t n_;
  size_t group_;  // elements per sub-group, a multiple of the I/O alignment
  std::unique_ptr<offload::AsyncIO> aio_;
  offload::IoFile m_file_, v_file_;
  std::unique_ptr<offload::PinnedBufferPool> pool_;
  struct BufferSet {
    float* m = nullptr;
    float* v = nullptr;
    offload::IoHandle read_m = 0, read_v = 0, write_m = 0, write_v = 0;
  };
  std::vector<BufferSet> sets_;
  std::vector<PipelineEvent> events_;
  double io_wait_s_ = 0.0;
};

}  // namespace zt
