#include "engine/zero/cuda/gpu_zero_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/engine_common.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grad_update.h"

namespace zt {
namespace {

// Named as the CPU optimizer names its buffers, so checkpoints move between the CPU and the GPU path.
constexpr const char* kExpAvg = "exp_avg";
constexpr const char* kExpAvgSq = "exp_avg_sq";

class GpuZeroEngine : public ZeroEngine {
 public:
  GpuZeroEngine(const Config& cfg, GPT2& layout, std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                ProcessGroup* device_pg)
      : cfg_(cfg),
        model_(std::move(model)),
        host_pg_(host_pg),
        device_pg_(device_pg),
        map_(layout, host_pg.size()),
        stage_(cfg.zero.stage),
        partitioned_(cfg.zero.stage >= 1),
        n_(layout.num_params()),
        rank_(host_pg.rank()),
        world_(host_pg.size()),
        stream_(static_cast<cudaStream_t>(model_->stream())),
        alloc_(model_->allocator()) {
    if (stage_ > 2) throw RuntimeError("the GPU engine runs ZeRO stages 0-2, not stage " + std::to_string(stage_));
    if (cfg.optimizer.type == OptimizerType::SGD) throw RuntimeError("the GPU engine has no SGD update (Adam only)");
    const ZeroConfig& z = cfg.zero;
    if (z.offload_optimizer.device == OffloadDevice::Nvme || z.offload_param.device != OffloadDevice::None)
      throw RuntimeError("the GPU engine offloads only the optimizer, and only to cpu (not nvme, not offload_param)");
    if (world_ > 1 && device_pg_ == nullptr)
      throw RuntimeError("the GPU engine needs a process group for device buffers at world size " +
                         std::to_string(world_));
    if (model_->num_params() != n_)
      throw RuntimeError("the GPU engine: the GPU model has " + std::to_string(model_->num_params()) +
                         " parameters, the layout " + std::to_string(n_));
    decoupled_ = cfg.optimizer.type == OptimizerType::AdamW || cfg.optimizer.adam_w_mode;
    state_n_ = partitioned_ ? map_.partition_numel() : n_;
    ranges_ = partitioned_ ? map_.decay_ranges(layout.params(), rank_) : full_decay_ranges(layout);
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));

    // Every device buffer of the step is taken here, from the model's caching allocator: a step allocates nothing.
    // With the optimizer offloaded (stages 1-2) the master partition and Adam's state live in host memory instead.
    const bool offload = partitioned_ && cfg.zero.offload_optimizer.device == OffloadDevice::Cpu;
    if (!offload) {
      exp_avg_ = take(state_n_);
      exp_avg_sq_ = take(state_n_);
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_, 0, state_n_ * sizeof(float), stream_));
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_, 0, state_n_ * sizeof(float), stream_));
    }
    partials_ = take(cuda::kSumSquaresPartials);
    sum_squares_ = static_cast<double*>(alloc_.allocate(sizeof(double)));
    if (partitioned_) {
      size_t at = 0;
      for (const UnitShard& u : map_.units()) {
        padded_offset_.push_back(at);
        at += u.padded;
      }
      padded_ = take(at);
      padded_n_ = at;
      grad_part_ = take(state_n_);
      std::vector<float> part(state_n_);
      map_.flat_to_partition(layout.param_data(), part.data(), rank_);
      if (offload) {
        offload_ = std::make_unique<HostOffloadOptimizer>(cfg, state_n_, ranges_, part.data(), stream_, rank_);
      } else {
        master_ = take(state_n_);
        upload(master_, part.data(), state_n_);
      }
    }
    model_->upload_params(layout.param_data());
  }

  ~GpuZeroEngine() override {
    offload_.reset();  // waits for its copies, which may target grad_part_ after an interrupted step
    cudaStreamSynchronize(stream_);
    for (void* p : blocks_) alloc_.free(p);
    alloc_.free(sum_squares_);
    cudaEventDestroy(grads_ready_);
  }

  void begin_step() override { model_->zero_grad(); }

  void end_micro_batch(bool last) override {
    if (!last) return;
    cuda::NvtxRange range("reduce");
    if (partitioned_) {
      reduce_scatter_gradients();
    } else if (world_ > 1) {
      order_comm_after_compute();
      float* g = model_->device_grads();
      const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
      std::vector<std::shared_ptr<Work>> works;
      for (size_t at = 0; at < n_; at += bucket)
        works.push_back(device_pg_->allreduce_async(g + at, std::min(bucket, n_ - at), DType::F32, ReduceOp::Avg));
      for (auto& w : works) w->wait();
    }
  }

  StepResult step(double lr, int64_t step) override {
    cuda::NvtxRange range("optimizer");
    StepResult r;
    r.loss_scale = 1.0f;
    float* grads = partitioned_ ? grad_part_ : model_->device_grads();
    float* params = partitioned_ ? master_ : model_->device_params();
    cuda::sum_squares(sum_squares_, partials_, grads, state_n_, stream_);
    double local = 0.0;
    ZT_CUDA_CHECK(cudaMemcpyAsync(&local, sum_squares_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    r.grad_norm = partitioned_ ? global_norm_from_partitions(host_pg_, local) : std::sqrt(local);
    const float clip = clip_factor(r.grad_norm, cfg_.gradient_clipping);
    if (clip != 1.0f) cuda::scale_inplace(grads, state_n_, clip, stream_);
    if (offload_) {  // the updated weights come back over the gradient partition, to be allgathered from there
      ZT_CUDA_CHECK_LAUNCH("scale_inplace");
      r.io_wait_s = offload_->step(grad_part_, lr, step);
      publish_params(grad_part_);
      return r;
    }
    for (const DecayRange& d : ranges_) {
      if (d.end <= d.begin) continue;
      const AdamStepScalars s = adam_step_scalars(cfg_.optimizer, decoupled_, lr, step, d.decay);
      cuda::adam_update(params + d.begin, grads + d.begin, exp_avg_ + d.begin, exp_avg_sq_ + d.begin,
                        d.end - d.begin, s, stream_);
    }
    ZT_CUDA_CHECK_LAUNCH("adam_update");
    if (partitioned_) publish_params(master_);
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    m.param_bytes = n_ * sizeof(float);
    m.grad_bytes = n_ * sizeof(float);
    m.optimizer_bytes = (partitioned_ ? 3 : 2) * state_n_ * sizeof(float);  // (master partition,) exp_avg, exp_avg_sq
    m.comm_bytes = partitioned_ ? (padded_n_ + state_n_) * sizeof(float) : 0;
    if (offload_) m.comm_bytes += state_n_ * sizeof(float);  // the gradient partition's copy in host memory
    return m;
  }

  float loss_scale() const override { return 1.0f; }

  void gather_full_params(float* out) override { download(out, model_->device_params(), n_); }

  int stage() const override { return stage_; }
  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override { return {"master", kExpAvg, kExpAvgSq}; }

  void export_partition(const std::string& name, float* partition) override {
    if (offload_) {
      std::memcpy(partition, offload_->state(name), state_n_ * sizeof(float));
      return;
    }
    const float* src = state_buffer(name);
    if (partitioned_) {
      download(partition, src, state_n_);
      return;
    }
    std::vector<float> full(n_);
    download(full.data(), src, n_);
    map_.flat_to_partition(full.data(), partition, rank_);
  }

  void import_full(const std::string& name, const float* flat) override {
    if (offload_) {  // into the host partition; the model's weights as below
      map_.flat_to_partition(flat, offload_->state(name), rank_);
      if (name == "master") upload(model_->device_params(), flat, n_);
      return;
    }
    float* dst = state_buffer(name);
    if (!partitioned_) {
      upload(dst, flat, n_);
      return;
    }
    std::vector<float> part(state_n_);
    map_.flat_to_partition(flat, part.data(), rank_);
    upload(dst, part.data(), state_n_);
    // Every rank has the full weights here, so the model gets them directly rather than by an allgather.
    if (name == "master") upload(model_->device_params(), flat, n_);
  }

  void finish_import() override { ZT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // fp16 (the only user of a loss scaler) is refused for the GPU path when the config is parsed.
  ScalerState scaler_state() const override { return {}; }
  void set_scaler_state(const ScalerState&) override {}

 private:
  float* take(size_t n) {
    float* p = static_cast<float*>(alloc_.allocate(n * sizeof(float)));
    blocks_.push_back(p);
    return p;
  }

  float* state_buffer(const std::string& name) {
    if (name == "master") return partitioned_ ? master_ : model_->device_params();
    if (name == kExpAvg) return exp_avg_;
    if (name == kExpAvgSq) return exp_avg_sq_;
    throw RuntimeError("the GPU engine has no state buffer '" + name + "' (a checkpoint of another optimizer?)");
  }

  void upload(float* dev, const float* host, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void download(float* host, const float* dev, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Both device-buffer backends start a collective on their own stream after the work queued on the legacy default
  // stream (NCCL's communication stream, the staging copier's copy stream). The model computes on a non-blocking
  // stream, so the legacy stream is made to wait for the model's work here, on the device, without blocking the host.
  void order_comm_after_compute() {
    ZT_CUDA_CHECK(cudaEventRecord(grads_ready_, stream_));
    ZT_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, grads_ready_, 0));
  }

  // Each unit's gradient into its padded slot, then one reduce-scatter per unit into this rank's partition.
  void reduce_scatter_gradients() {
    const float* g = model_->device_grads();
    const std::vector<UnitShard>& units = map_.units();
    for (size_t u = 0; u < units.size(); ++u) {
      float* slot = padded_ + padded_offset_[u];
      ZT_CUDA_CHECK(cudaMemcpyAsync(slot, g + units[u].flat_offset, units[u].numel * sizeof(float),
                                    cudaMemcpyDeviceToDevice, stream_));
      ZT_CUDA_CHECK(cudaMemsetAsync(slot + units[u].numel, 0, (units[u].padded - units[u].numel) * sizeof(float),
                                    stream_));
    }
    if (world_ == 1) {  // one rank owns every shard whole: the partition is the padded buffer itself
      ZT_CUDA_CHECK(cudaMemcpyAsync(grad_part_, padded_, state_n_ * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    order_comm_after_compute();
    std::vector<std::shared_ptr<Work>> works;
    for (size_t u = 0; u < units.size(); ++u)
      works.push_back(device_pg_->reduce_scatter_async(padded_ + padded_offset_[u], grad_part_ + units[u].local_offset,
                                                       units[u].shard, DType::F32, ReduceOp::Avg));
    for (auto& w : works) w->wait();
  }

  // The updated partitions (this rank's: partition) of every rank gathered unit by unit into the padded buffer, then
  // into the model.
  void publish_params(const float* partition) {
    const std::vector<UnitShard>& units = map_.units();
    if (world_ == 1) {
      ZT_CUDA_CHECK(cudaMemcpyAsync(padded_, partition, state_n_ * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    } else {
      order_comm_after_compute();
      std::vector<std::shared_ptr<Work>> works;
      for (size_t u = 0; u < units.size(); ++u)
        works.push_back(device_pg_->allgather_async(partition + units[u].local_offset, padded_ + padded_offset_[u],
                                                    units[u].shard, DType::F32));
      for (auto& w : works) w->wait();
    }
    float* params = model_->device_params();
    for (size_t u = 0; u < units.size(); ++u)
      ZT_CUDA_CHECK(cudaMemcpyAsync(params + units[u].flat_offset, padded_ + padded_offset_[u],
                                    units[u].numel * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }

  const Config& cfg_;
  std::shared_ptr<cuda::GPT2Cuda> model_;
  ProcessGroup& host_pg_;
  ProcessGroup* device_pg_;
  PartitionMap map_;
  int stage_;
  bool partitioned_;
  size_t n_;
  int rank_, world_;
  cudaStream_t stream_;
  cuda::CachingAllocator& alloc_;
  bool decoupled_ = true;
  size_t state_n_ = 0, padded_n_ = 0;
  std::vector<DecayRange> ranges_;  // over the buffers the update runs on (full model or partition)
  std::vector<size_t> padded_offset_;
  std::vector<void*> blocks_;
  cudaEvent_t grads_ready_ = nullptr;
  float *exp_avg_ = nullptr, *exp_avg_sq_ = nullptr, *partials_ = nullptr;
  double* sum_squares_ = nullptr;
  float *master_ = nullptr, *grad_part_ = nullptr, *padded_ = nullptr;  // partitioned stages only
  std::unique_ptr<HostOffloadOptimizer> offload_;  // offload_optimizer.device = cpu: master and state on the host
};

}  // namespace

std::unique_ptr<ZeroEngine> make_gpu_zero_engine(const Config& cfg, GPT2& layout,
                                                 std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                 ProcessGroup* device_pg) {
  return std::make_unique<GpuZeroEngine>(cfg, layout, std::move(model), host_pg, device_pg);
}

}  // namespace zt
