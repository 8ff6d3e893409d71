#pragma once
// ZeRO-Offload for the GPU engine at stages 1-2 (zero_optimization.offload_optimizer.device = cpu): the rank's fp32
// master partition and Adam's moments live in host memory (one allocation made here, page-locked with pin_memory),
// and the device keeps only the model's parameters and gradients. step() brings the rank's reduced and clipped
// gradient partition to the host in chunks on a copy stream of its own, runs the CPU Adam on each chunk as it lands
// and copies each updated chunk back over the gradient partition on the device, so the engine allgathers the new
// weights from there (offload_chunk_pipeline.h has the order of work).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/zero/cuda/offload_chunk_pipeline.h"

namespace zt {

// Elements per chunk: zero_optimization.sub_group_size (the optimizer step's tile, as in DeepSpeed), at most
// kMaxOffloadChunk so that with the default (1e9) the copies and the CPU work still overlap.
constexpr size_t kMaxOffloadChunk = size_t{1} << 22;  // 16 MiB of fp32
size_t offload_chunk_elems(const ZeroConfig& zero);

class HostOffloadOptimizer {
 public:
  // n: the partition's elements; ranges: its weight-decay ranges; initial_master: its initial weights (n floats in
  // host memory). compute_stream: where the gradient partition is produced and the updated weights are used.
  HostOffloadOptimizer(const Config& cfg, size_t n, std::vector<DecayRange> ranges, const float* initial_master,
                       cudaStream_t compute_stream, int rank);
  ~HostOffloadOptimizer();
  HostOffloadOptimizer(const HostOffloadOptimizer&) = delete;
  HostOffloadOptimizer& operator=(const HostOffloadOptimizer&) = delete;

  // device_partition: n floats on the device. In: the gradient partition, complete in the order of compute_stream.
  // Out: the updated fp32 weights, for work queued on compute_stream after this returns (the host does not wait
  // for the last uploads). Returns the seconds the host blocked on downloads (the copies the CPU work did not hide).
  double step(float* device_partition, double lr, int64_t step);

  // The host-resident "master", "exp_avg" or "exp_avg_sq" (n floats) for checkpoints; waits for copies in flight
  // first, so the caller may read or overwrite it.
  float* state(const std::string& name);
  size_t host_bytes() const { return 4 * host_.n * sizeof(float); }

 private:
  class Copier;

  const Config& cfg_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t grads_ready_ = nullptr;
  bool pinned_ = false;
  // The four host buffers in one allocation (cudaFreeHost or delete[]), freed after the copy stream is idle.
  std::unique_ptr<float[], void (*)(float*)> storage_{nullptr, nullptr};
  HostAdamPartition host_;
  ChunkSplit split_;
  std::unique_ptr<Copier> copier_;
};

}  // namespace zt
