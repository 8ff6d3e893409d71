#include "engine/zero/cuda/host_offload_optimizer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "kernels/cuda/cuda_check.h"

namespace zt {
namespace {

// Downloads queued ahead of the chunk the CPU is updating: with two, the copy engine still has work while an upload
// sits between two downloads on the stream.
constexpr size_t kLookahead = 2;

}  // namespace

size_t offload_chunk_elems(const ZeroConfig& zero) {
  return static_cast<size_t>(std::clamp<int64_t>(zero.sub_group_size, 1, static_cast<int64_t>(kMaxOffloadChunk)));
}

// The pipeline's copies on the copy stream, between the device partition of the current step and the host buffers;
// one event per chunk marks its download.
class HostOffloadOptimizer::Copier : public ChunkCopier {
 public:
  Copier(cudaStream_t copy, size_t chunks, const HostAdamPartition& host) : copy_(copy), host_(host) {
    downloaded_.resize(chunks, nullptr);
    for (cudaEvent_t& e : downloaded_) ZT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  }
  ~Copier() override {
    for (cudaEvent_t e : downloaded_)
      if (e != nullptr) cudaEventDestroy(e);
    if (uploaded_ != nullptr) cudaEventDestroy(uploaded_);
  }

  // Before each step: its device partition, and the wait count starts again.
  void start(float* device_partition) {
    device_ = device_partition;
    waited_s_ = 0.0;
  }
  double waited_s() const { return waited_s_; }
  cudaEvent_t uploaded() const { return uploaded_; }

  void queue_download(size_t chunk, size_t begin, size_t end) override {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host_.grads + begin, device_ + begin, (end - begin) * sizeof(float),
                                  cudaMemcpyDeviceToHost, copy_));
    ZT_CUDA_CHECK(cudaEventRecord(downloaded_.at(chunk), copy_));
  }
  void wait_download(size_t chunk) override {
    const auto t0 = std::chrono::steady_clock::now();
    ZT_CUDA_CHECK(cudaEventSynchronize(downloaded_.at(chunk)));
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void queue_upload(size_t, size_t begin, size_t end) override {
    ZT_CUDA_CHECK(cudaMemcpyAsync(device_ + begin, host_.master + begin, (end - begin) * sizeof(float),
                                  cudaMemcpyHostToDevice, copy_));
  }
  void finish() override { ZT_CUDA_CHECK(cudaEventRecord(uploaded_, copy_)); }

 private:
  cudaStream_t copy_;
  const HostAdamPartition& host_;
  float* device_ = nullptr;
  double waited_s_ = 0.0;
  std::vector<cudaEvent_t> downloaded_;
  cudaEvent_t uploaded_ = nullptr;
};

HostOffloadOptimizer::HostOffloadOptimizer(const Config& cfg, size_t n, std::vector<DecayRange> ranges,
                                           const float* initial_master, cudaStream_t compute_stream, int rank)
    : cfg_(cfg), compute_(compute_stream), pinned_(cfg.zero.offload_optimizer.pin_memory) {
  if (cfg.optimizer.type == OptimizerType::SGD)
    throw RuntimeError("zero_optimization.offload_optimizer.device=cpu on the GPU runs CPU Adam/AdamW, not SGD");
  const size_t floats = 4 * n + 1;
  if (pinned_) {
    void* p = nullptr;
    ZT_CUDA_CHECK(cudaHostAlloc(&p, floats * sizeof(float), cudaHostAllocDefault));
    storage_ = {static_cast<float*>(p), [](float* q) { cudaFreeHost(q); }};
  } else {
    storage_ = {new float[floats], [](float* q) { delete[] q; }};
  }
  host_.n = n;
  host_.master = storage_.get();
  host_.grads = host_.master + n;
  host_.exp_avg = host_.master + 2 * n;
  host_.exp_avg_sq = host_.master + 3 * n;
  host_.ranges = std::move(ranges);
  std::memcpy(host_.master, initial_master, n * sizeof(float));
  std::memset(host_.grads, 0, 3 * n * sizeof(float));
  split_ = {n, offload_chunk_elems(cfg.zero)};

  ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  ZT_CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));
  copier_ = std::make_unique<Copier>(copy_, split_.count(), host_);
  if (rank == 0)
    spdlog::info("offload_optimizer to cpu on the GPU: the fp32 master partition and Adam state ({} MiB of {} host "
                 "memory per rank, with the gradient's staging copy) stay on the host; each step moves the "
                 "gradient partition in {} chunks of up to {} elements and updates them in the vectorised CPU Adam "
                 "({})",
                 host_bytes() >> 20, pinned_ ? "pinned" : "pageable (pin_memory: false)", split_.count(),
                 split_.chunk, offload::cpu_isa_name(offload::cpu_adam_isa()));
}

HostOffloadOptimizer::~HostOffloadOptimizer() {
  // Copies may still read or write the host buffers.
  if (copy_ != nullptr) cudaStreamSynchronize(copy_);
  copier_.reset();
  if (grads_ready_ != nullptr) cudaEventDestroy(grads_ready_);
  if (copy_ != nullptr) cudaStreamDestroy(copy_);
}

double HostOffloadOptimizer::step(float* device_partition, double lr, int64_t step) {
  const offload::CpuAdamHyper hyper = offload::cpu_adam_hyper(cfg_.optimizer, lr);
  // The copy stream starts after the gradient partition is complete (reduced and clipped on the compute stream);
  // the compute stream's later work (the allgather) starts after the last upload. Neither blocks the host.
  ZT_CUDA_CHECK(cudaEventRecord(grads_ready_, compute_));
  ZT_CUDA_CHECK(cudaStreamWaitEvent(copy_, grads_ready_, 0));
  copier_->start(device_partition);
  run_chunk_pipeline(split_, kLookahead, *copier_,
                     [&](size_t begin, size_t end) { host_.update(begin, end, hyper, step); });
  ZT_CUDA_CHECK(cudaStreamWaitEvent(compute_, copier_->uploaded(), 0));
  return copier_->waited_s();
}

float* HostOffloadOptimizer::state(const std::string& name) {
  ZT_CUDA_CHECK(cudaStreamSynchronize(copy_));
  return host_.state(name);
}

}  // namespace zt
