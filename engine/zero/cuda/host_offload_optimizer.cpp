#include "engine/zero/cuda/host_offload_optimizer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/zero/cuda/host_memory_check.h"
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
  // Downloads land in host.grads; uploads leave from host.master (cpu) or from host.grads (nvme: the updated
  // sub-group is put back into its gradient slot).
  Copier(cudaStream_t copy, size_t chunks, const HostAdamPartition& host, const float* upload_from)
      : copy_(copy), host_(host), upload_from_(upload_from) {
    downloaded_.resize(chunks, nullptr);
    for (cudaEvent_t& e : downloaded_) ZT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  }
  ~Copier() override {
    for (cudaEvent_t e : downloaded_)
      if (e != nullptr) cudaEventDestroy(e);
    if (uploaded_ != nullptr) cudaEventDestroy(uploaded_);
  }

  // Before each step: its device partition, whether updates go up, and the wait count starts again.
  void start(float* device_partition, bool upload) {
    device_ = device_partition;
    upload_ = upload;
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
    if (!upload_) return;
    ZT_CUDA_CHECK(cudaMemcpyAsync(device_ + begin, upload_from_ + begin, (end - begin) * sizeof(float),
                                  cudaMemcpyHostToDevice, copy_));
  }
  void finish() override { ZT_CUDA_CHECK(cudaEventRecord(uploaded_, copy_)); }

 private:
  cudaStream_t copy_;
  const HostAdamPartition& host_;
  const float* upload_from_;
  float* device_ = nullptr;
  bool upload_ = true;
  double waited_s_ = 0.0;
  std::vector<cudaEvent_t> downloaded_;
  cudaEvent_t uploaded_ = nullptr;
};

HostOffloadOptimizer::HostOffloadOptimizer(const Config& cfg, size_t n, std::vector<DecayRange> ranges,
                                           const float* initial_master, cudaStream_t compute_stream, int rank)
    : cfg_(cfg), compute_(compute_stream), pinned_(cfg.zero.offload_optimizer.pin_memory) {
  if (cfg.optimizer.type == OptimizerType::SGD)
    throw RuntimeError("zero_optimization.offload_optimizer on the GPU runs CPU Adam/AdamW, not SGD");
  const bool nvme = cfg.zero.offload_optimizer.device == OffloadDevice::Nvme;
  check_host_memory((nvme ? 1 : 4) * n * sizeof(float),
                    std::string("zero_optimization.offload_optimizer.device ") + (nvme ? "nvme" : "cpu") +
                        (nvme ? " (the gradient's staging copy)" : " (the fp32 master, Adam's state and the gradient)"),
                    host_memory_available());
  if (nvme) nvme_ = std::make_unique<NvmeOptimizerState>(cfg, n, rank, initial_master);
  const size_t floats = (nvme ? 1 : 4) * n + 1;
  storage_ = make_host_array<float>(floats, pinned_);
  host_.n = n;
  host_.ranges = std::move(ranges);
  if (nvme) {
    host_.grads = storage_.get();
    std::memset(host_.grads, 0, n * sizeof(float));
    // The chunks are the swap files' sub-groups (a multiple of the I/O alignment).
    split_ = {n, nvme_->sub_group_elements()};
  } else {
    host_.master = storage_.get();
    host_.grads = host_.master + n;
    host_.exp_avg = host_.master + 2 * n;
    host_.exp_avg_sq = host_.master + 3 * n;
    std::memcpy(host_.master, initial_master, n * sizeof(float));
    std::memset(host_.grads, 0, 3 * n * sizeof(float));
    split_ = {n, offload_chunk_elems(cfg.zero)};
  }

  ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  ZT_CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));
  copier_ = std::make_unique<Copier>(copy_, split_.count(), host_, nvme ? host_.grads : host_.master);
  if (rank == 0 && nvme)
    spdlog::info("offload_optimizer to nvme on the GPU: the fp32 master partition and Adam state are in swap files "
                 "under {} ({} buffer sets of {} elements, {} MiB), the gradient's staging copy in {} MiB of {} host "
                 "memory per rank; each step moves the gradient partition in {} chunks",
                 cfg.zero.offload_optimizer.nvme_path, nvme_->buffer_sets(), nvme_->sub_group_elements(),
                 nvme_->buffer_bytes() >> 20, (n * sizeof(float)) >> 20, pinned_ ? "pinned" : "pageable",
                 split_.count());
  else if (rank == 0)
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

double HostOffloadOptimizer::step(float* device_partition, double lr, int64_t step, const MasterSink& updated,
                                  bool upload) {
  const offload::CpuAdamHyper hyper = offload::cpu_adam_hyper(cfg_.optimizer, lr);
  // The copy stream starts after the gradient partition is complete (reduced and clipped on the compute stream);
  // the compute stream's later work (the allgather) starts after the last upload. Neither blocks the host.
  ZT_CUDA_CHECK(cudaEventRecord(grads_ready_, compute_));
  ZT_CUDA_CHECK(cudaStreamWaitEvent(copy_, grads_ready_, 0));
  copier_->start(device_partition, upload);
  if (nvme_) {
    const double io_before = nvme_->io_wait_seconds();
    run_nvme_chunk_pipeline(*nvme_, kLookahead, *copier_, host_.grads, host_.ranges, hyper, step, updated);
    ZT_CUDA_CHECK(cudaStreamWaitEvent(compute_, copier_->uploaded(), 0));
    return copier_->waited_s() + (nvme_->io_wait_seconds() - io_before);
  }
  run_chunk_pipeline(split_, kLookahead, *copier_, [&](size_t begin, size_t end) {
    host_.update(begin, end, hyper, step);
    if (updated) updated(begin, end - begin, host_.master + begin);
  });
  ZT_CUDA_CHECK(cudaStreamWaitEvent(compute_, copier_->uploaded(), 0));
  return copier_->waited_s();
}

void HostOffloadOptimizer::export_state(const std::string& name, float* out) {
  ZT_CUDA_CHECK(cudaStreamSynchronize(copy_));
  if (nvme_)
    nvme_->read_state(name, out);
  else
    std::memcpy(out, host_.state(name), host_.n * sizeof(float));
}

void HostOffloadOptimizer::import_state(const std::string& name, const float* in) {
  ZT_CUDA_CHECK(cudaStreamSynchronize(copy_));
  if (nvme_)
    nvme_->write_state(name, in);
  else
    std::memcpy(host_.state(name), in, host_.n * sizeof(float));
}

void HostOffloadOptimizer::read_master(const MasterSink& sink) {
  ZT_CUDA_CHECK(cudaStreamSynchronize(copy_));
  if (nvme_) {
    nvme_->read_master(sink);
    return;
  }
  for (size_t k = 0; k < split_.count(); ++k)
    sink(split_.begin(k), split_.end(k) - split_.begin(k), host_.master + split_.begin(k));
}

size_t HostOffloadOptimizer::host_bytes() const {
  if (nvme_) return host_.n * sizeof(float) + nvme_->buffer_bytes();
  return 4 * host_.n * sizeof(float);
}

}  // namespace zt
