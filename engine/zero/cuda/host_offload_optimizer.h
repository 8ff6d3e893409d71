#pragma once
// ZeRO-Offload and ZeRO-Infinity's optimizer offload for the GPU engines (zero_optimization.offload_optimizer.device
// cpu or nvme, stages 1-3): with cpu the rank's fp32 master partition and Adam's moments live in host memory (one
// allocation made here, page-locked with pin_memory); with nvme they live in NvmeOptimizerState's swap files and
// pass through its buffer sets one sub-group at a time, and host memory holds only the gradient's staging copy.
// The device keeps no master and no Adam state. step() brings the rank's reduced and clipped gradient partition to
// the host in chunks on a copy stream of its own, runs the CPU Adam on each chunk as it lands and (unless told not
// to) copies each updated chunk back over the gradient partition on the device, so the engine publishes the new
// weights from there (offload_chunk_pipeline.h has the order of work).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/zero/cuda/offload_chunk_pipeline.h"
#include "kernels/cuda/cuda_check.h"

namespace zt {

// n elements of host memory, page-locked (cudaHostAlloc) when pinned, pageable otherwise; freed by its own deleter.
template <typename T>
using HostArray = std::unique_ptr<T[], void (*)(T*)>;
template <typename T>
HostArray<T> make_host_array(size_t n, bool pinned) {
  if (!pinned) return {new T[n], [](T* q) { delete[] q; }};
  void* p = nullptr;
  ZT_CUDA_CHECK(cudaHostAlloc(&p, n * sizeof(T), cudaHostAllocDefault));
  return {static_cast<T*>(p), [](T* q) { cudaFreeHost(q); }};
}

// Elements per chunk: zero_optimization.sub_group_size (the optimizer step's tile, as in DeepSpeed), at most
// kMaxOffloadChunk so that with the default (1e9) the copies and the CPU work still overlap.
constexpr size_t kMaxOffloadChunk = size_t{1} << 22;  // 16 MiB of fp32
size_t offload_chunk_elems(const ZeroConfig& zero);

class HostOffloadOptimizer {
 public:
  // n: the partition's elements; ranges: its weight-decay ranges; initial_master: its initial weights (n floats in
  // host memory). compute_stream: where the gradient partition is produced and the updated weights are used.
  // With offload_optimizer.device nvme the swap files are created under nvme_path (RuntimeError naming it).
  HostOffloadOptimizer(const Config& cfg, size_t n, std::vector<DecayRange> ranges, const float* initial_master,
                       cudaStream_t compute_stream, int rank);
  ~HostOffloadOptimizer();
  HostOffloadOptimizer(const HostOffloadOptimizer&) = delete;
  HostOffloadOptimizer& operator=(const HostOffloadOptimizer&) = delete;

  // device_partition: n floats on the device. In: the gradient partition, complete in the order of compute_stream.
  // Out (with upload): the updated fp32 weights, for work queued on compute_stream after this returns (the host does
  // not wait for the last uploads). updated (if given) sees every updated chunk on the host, in order, before its
  // upload is queued (offload_param keeps its working copy from it). Returns the seconds the host blocked on
  // downloads and swap-file reads (the copies the CPU work did not hide).
  double step(float* device_partition, double lr, int64_t step, const MasterSink& updated = {}, bool upload = true);

  // Checkpoint access to "master", "exp_avg" or "exp_avg_sq" (n floats of the partition); waits for copies in flight
  // first. RuntimeError naming anything else.
  void export_state(const std::string& name, float* out);
  void import_state(const std::string& name, const float* in);
  // The fp32 master partition through sink, in order (from host memory, or streamed from the swap file).
  void read_master(const MasterSink& sink);
  // Host memory this holds: the state and the staging copy (cpu), or the staging copy and the swap buffers (nvme).
  size_t host_bytes() const;
  bool on_nvme() const { return nvme_ != nullptr; }

 private:
  class Copier;

  const Config& cfg_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t grads_ready_ = nullptr;
  bool pinned_ = false;
  // The host buffers in one allocation (cudaFreeHost or delete[]), freed after the copy stream is idle: cpu: master,
  // gradient staging, exp_avg, exp_avg_sq; nvme: the gradient staging only.
  HostArray<float> storage_{nullptr, nullptr};
  HostAdamPartition host_;
  std::unique_ptr<NvmeOptimizerState> nvme_;
  ChunkSplit split_;
  std::unique_ptr<Copier> copier_;
};

}  // namespace zt
