#include "engine/zero/cuda/gpu_zero_engine.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/base/error.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/gpu_engine_common.h"
#include "engine/zero/cuda/gpu_stage3_engine.h"
#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/engine_common.h"
#include "engine/zero/gradient_bucketer.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/grad_update.h"

namespace zt {
namespace {

// S: the model's storage type. In fp32 the update runs on the model's own parameters at stage 0, as before; in
// bf16/fp16 every stage keeps an fp32 master (stage 0: of everything, stages 1-2: of the partition) and fp32
// reduced gradients, as the CPU engines and DeepSpeed's mixed-precision optimizers do.
template <typename S>
class GpuZeroEngine : public ZeroEngine {
  static constexpr bool kMixed = !std::is_same_v<S, float>;

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
        alloc_(model_->allocator()),
        scaler_(cfg.fp16) {
    if (stage_ > 2) throw RuntimeError("the GPU engine runs ZeRO stages 0-2, not stage " + std::to_string(stage_));
    check_gpu_engine_args(cfg, n_, *model_, storage_of<S>(), world_, device_pg_);
    const ZeroConfig& z = cfg.zero;
    if (z.offload_param.device != OffloadDevice::None)
      throw RuntimeError("the GPU engine at stages 0-2 offloads only the optimizer (offload_param is stage 3's)");
    decoupled_ = cfg.optimizer.type == OptimizerType::AdamW || cfg.optimizer.adam_w_mode;
    state_n_ = partitioned_ ? map_.partition_numel() : n_;
    ranges_ = partitioned_ ? map_.decay_ranges(layout.params(), rank_) : full_decay_ranges(layout);
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&grads_ready_, cudaEventDisableTiming));

    // Every device buffer of the step is taken here, from the model's caching allocator: a step allocates nothing.
    // With the optimizer offloaded (stages 1-2) the master partition and Adam's state live in host memory (cpu) or
    // in swap files (nvme) instead.
    const bool offload = partitioned_ && cfg.zero.offload_optimizer.device != OffloadDevice::None;
    if (!offload) {
      exp_avg_ = take<float>(state_n_);
      exp_avg_sq_ = take<float>(state_n_);
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_, 0, state_n_ * sizeof(float), stream_));
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_, 0, state_n_ * sizeof(float), stream_));
    }
    partials_ = take<float>(cuda::kSumSquaresPartials);
    sum_squares_ = take<double>(1);
    overflow_flag_ = take<int>(1);
    if (partitioned_) {
      size_t at = 0;
      for (const UnitShard& u : map_.units()) {
        padded_offset_.push_back(at);
        at += u.padded;
      }
      padded_ = take<float>(at);
      padded_n_ = at;
      reduced_ = take<float>(state_n_);
      std::vector<float> part(state_n_);
      map_.flat_to_partition(layout.param_data(), part.data(), rank_);
      if (offload) {
        offload_ = std::make_unique<HostOffloadOptimizer>(cfg, state_n_, ranges_, part.data(), stream_, rank_);
      } else {
        master_ = take<float>(state_n_);
        upload(master_, part.data(), state_n_);
      }
    } else if constexpr (kMixed) {
      master_ = take<float>(n_);  // the initial fp32 weights, before their rounding into the model
      reduced_ = take<float>(n_);
      upload(master_, layout.param_data(), n_);
    } else {
      master_ = model_params();
      reduced_ = model_grads();
    }
    model_->upload_params(layout.param_data());
  }

  ~GpuZeroEngine() override {
    offload_.reset();  // waits for its copies, which may target reduced_ after an interrupted step
    cudaStreamSynchronize(stream_);
    for (void* p : blocks_) alloc_.free(p);
    cudaEventDestroy(grads_ready_);
  }

  void begin_step() override { model_->zero_grad(); }

  void end_micro_batch(bool last) override {
    if (!last) return;
    cuda::NvtxRange range("reduce");
    if (partitioned_)
      reduce_scatter_gradients();
    else
      allreduce_gradients();
  }

  StepResult step(double lr, int64_t step) override {
    cuda::NvtxRange range("optimizer");
    StepResult r;
    DeviceGradients grads(reduced_, state_n_, stream_, partials_, sum_squares_, overflow_flag_);
    if (!finish_gradients(host_pg_, scaler_, grads, cfg_.gradient_clipping, partitioned_, r)) return r;
    if (offload_) {  // the updated fp32 weights come back over the reduced gradients, to be published from there
      ZT_CUDA_CHECK_LAUNCH("finish_gradients");
      r.io_wait_s = offload_->step(reduced_, lr, step);
      publish_params(reduced_);
      return r;
    }
    for (const DecayRange& d : ranges_) {
      if (d.end <= d.begin) continue;
      const AdamStepScalars s = adam_step_scalars(cfg_.optimizer, decoupled_, lr, step, d.decay);
      cuda::adam_update(master_ + d.begin, reduced_ + d.begin, exp_avg_ + d.begin, exp_avg_sq_ + d.begin,
                        d.end - d.begin, s, stream_);
    }
    ZT_CUDA_CHECK_LAUNCH("adam_update");
    if (partitioned_) {
      publish_params(master_);
    } else if constexpr (kMixed) {
      cuda::cast(model_params(), master_, n_, stream_);
    }
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    m.param_bytes = n_ * sizeof(S);
    // Stage 0 in 16 bits also keeps the fp32 reduced gradients (the update's input), as DeepSpeed's bf16 optimizer
    // keeps fp32 gradients.
    m.grad_bytes = n_ * sizeof(S) + (!partitioned_ && kMixed ? n_ * sizeof(float) : 0);
    // (fp32 master, where it is not the model's own parameters,) exp_avg, exp_avg_sq
    m.optimizer_bytes = (partitioned_ || kMixed ? 3 : 2) * state_n_ * sizeof(float);
    m.comm_bytes = partitioned_ ? (padded_n_ + state_n_) * sizeof(float) : 0;  // padded staging, reduced partition
    if (offload_) m.comm_bytes += state_n_ * sizeof(float);  // the gradient partition's copy in host memory
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  // Collective at stages 1-2 in 16 bits: the fp32 master partitions are gathered (the model holds only their
  // rounding).
  void gather_full_params(float* out) override {
    if (!kMixed) {
      model_->download_params(out);
      return;
    }
    if (!partitioned_) {
      download(out, master_, n_);
      return;
    }
    if (offload_) {  // the master partitions are on the host: gathered over the host group
      std::vector<float> master(state_n_);
      offload_->export_state("master", master.data());
      allgather_partition(map_, host_pg_, master.data(), out,
                          static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)), gather_scratch_);
      return;
    }
    const float* gathered = world_ == 1 ? master_ : padded_;
    if (world_ > 1) allgather_units(master_, padded_, DType::F32);
    const std::vector<UnitShard>& units = map_.units();
    for (size_t u = 0; u < units.size(); ++u)
      ZT_CUDA_CHECK(cudaMemcpyAsync(out + units[u].flat_offset, gathered + padded_offset_[u],
                                    units[u].numel * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  int stage() const override { return stage_; }
  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override { return {"master", kExpAvg, kExpAvgSq}; }

  void export_partition(const std::string& name, float* partition) override {
    if (offload_) {
      offload_->export_state(name, partition);
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
      std::vector<float> part(state_n_);
      map_.flat_to_partition(flat, part.data(), rank_);
      offload_->import_state(name, part.data());
      if (name == "master") model_->upload_params(flat);
      return;
    }
    float* dst = state_buffer(name);
    if (!partitioned_) {
      upload(dst, flat, n_);
    } else {
      std::vector<float> part(state_n_);
      map_.flat_to_partition(flat, part.data(), rank_);
      upload(dst, part.data(), state_n_);
    }
    // Every rank has the full weights here, so the model gets them (rounded to its storage) directly rather than by
    // an allgather.
    if (name == "master" && (partitioned_ || kMixed)) model_->upload_params(flat);
  }

  void finish_import() override { ZT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  ScalerState scaler_state() const override {
    return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
  }
  void set_scaler_state(const ScalerState& s) override { scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps); }

 private:
  template <typename U>
  U* take(size_t n) {
    void* p = alloc_.allocate(n * sizeof(U));
    blocks_.push_back(p);
    return static_cast<U*>(p);
  }

  S* model_params() { return static_cast<S*>(model_->device_params()); }
  S* model_grads() { return static_cast<S*>(model_->device_grads()); }

  float* state_buffer(const std::string& name) { return adam_state_buffer(name, master_, exp_avg_, exp_avg_sq_); }

  void upload(float* dev, const float* host, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void download(float* host, const float* dev, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void order_comm_after_compute() { order_comm_after(stream_, grads_ready_); }

  // Gradients are reduced in fp32, as the CPU engines reduce (DeepSpeed reduces in the 16-bit type by default): the
  // 16-bit gradients are widened, averaged over ranks, and the average rounded to the storage type once.
  void allreduce_gradients() {
    if constexpr (kMixed) cuda::cast(reduced_, model_grads(), n_, stream_);
    if (world_ == 1) return;
    order_comm_after_compute();
    const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
    std::vector<std::shared_ptr<Work>> works;
    for (size_t at = 0; at < n_; at += bucket)
      works.push_back(
          device_pg_->allreduce_async(reduced_ + at, std::min(bucket, n_ - at), DType::F32, ReduceOp::Avg));
    for (auto& w : works) w->wait();
    if constexpr (kMixed) cuda::round_to_storage<S>(reduced_, n_, stream_);
  }

  // Each unit's gradient into its padded slot (widened to fp32), then one reduce-scatter per unit into this rank's
  // partition, rounded to the storage type as above.
  void reduce_scatter_gradients() {
    const S* g = model_grads();
    const std::vector<UnitShard>& units = map_.units();
    for (size_t u = 0; u < units.size(); ++u) {
      float* slot = padded_ + padded_offset_[u];
      if constexpr (kMixed) {
        cuda::cast(slot, g + units[u].flat_offset, units[u].numel, stream_);
      } else {
        ZT_CUDA_CHECK(cudaMemcpyAsync(slot, g + units[u].flat_offset, units[u].numel * sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream_));
      }
      ZT_CUDA_CHECK(cudaMemsetAsync(slot + units[u].numel, 0, (units[u].padded - units[u].numel) * sizeof(float),
                                    stream_));
    }
    if (world_ == 1) {  // one rank owns every shard whole: the partition is the padded buffer itself
      ZT_CUDA_CHECK(cudaMemcpyAsync(reduced_, padded_, state_n_ * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    order_comm_after_compute();
    std::vector<std::shared_ptr<Work>> works;
    for (size_t u = 0; u < units.size(); ++u)
      works.push_back(device_pg_->reduce_scatter_async(padded_ + padded_offset_[u], reduced_ + units[u].local_offset,
                                                       units[u].shard, DType::F32, ReduceOp::Avg));
    for (auto& w : works) w->wait();
    if constexpr (kMixed) cuda::round_to_storage<S>(reduced_, state_n_, stream_);
  }

  // Every rank's shard of each unit (partition layout, `part`) into the unit's padded slot of `gathered`.
  template <typename U>
  void allgather_units(const U* part, U* gathered, DType type) {
    const std::vector<UnitShard>& units = map_.units();
    order_comm_after_compute();
    std::vector<std::shared_ptr<Work>> works;
    for (size_t u = 0; u < units.size(); ++u)
      works.push_back(device_pg_->allgather_async(part + units[u].local_offset, gathered + padded_offset_[u],
                                                  units[u].shard, type));
    for (auto& w : works) w->wait();
  }

  // The updated fp32 partition (this rank's: the master, or with offload the weights uploaded over the reduced
  // gradients), in the storage type, gathered unit by unit and copied into the model. In 16 bits the partition is
  // cast first (rounding commutes with gathering, and half the bytes travel) into the upper half of the padded
  // buffer, which is idle until the next reduction: the gathered 16-bit units fill its lower half, and the partition
  // (state_n_ <= padded_n_ elements) may be the reduced gradients themselves, so it cannot be cast in place.
  void publish_params(const float* partition) {
    const S* part = nullptr;
    if constexpr (kMixed) {
      S* part16 = reinterpret_cast<S*>(padded_) + padded_n_;
      cuda::cast(part16, partition, state_n_, stream_);
      part = part16;
    } else {
      part = partition;
    }
    S* gathered = reinterpret_cast<S*>(padded_);
    if (world_ > 1) allgather_units(part, gathered, dtype_of<S>());
    const S* from = world_ == 1 ? part : gathered;  // with one rank the partition is the padded layout
    S* params = model_params();
    const std::vector<UnitShard>& units = map_.units();
    for (size_t u = 0; u < units.size(); ++u)
      ZT_CUDA_CHECK(cudaMemcpyAsync(params + units[u].flat_offset, from + padded_offset_[u],
                                    units[u].numel * sizeof(S), cudaMemcpyDeviceToDevice, stream_));
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
  LossScaler scaler_;
  bool decoupled_ = true;
  size_t state_n_ = 0, padded_n_ = 0;
  std::vector<DecayRange> ranges_;  // over the buffers the update runs on (full model or partition)
  std::vector<size_t> padded_offset_;
  std::vector<void*> blocks_;
  cudaEvent_t grads_ready_ = nullptr;
  float *exp_avg_ = nullptr, *exp_avg_sq_ = nullptr, *partials_ = nullptr;
  double* sum_squares_ = nullptr;
  int* overflow_flag_ = nullptr;
  // master_: the fp32 weights the update runs on (the partition; at stage 0 an fp32 copy of everything in 16 bits,
  // or the model's own parameters in fp32; none with offload). reduced_: the fp32 reduced gradients it reads, laid
  // out alike.
  float *master_ = nullptr, *reduced_ = nullptr;
  float* padded_ = nullptr;  // partitioned stages only: every unit padded, for the collectives
  std::unique_ptr<HostOffloadOptimizer> offload_;  // offload_optimizer.device = cpu: master and state on the host
  std::vector<float> gather_scratch_;  // gather_full_params with offload in 16 bits
};

}  // namespace

std::unique_ptr<ZeroEngine> make_gpu_zero_engine(const Config& cfg, GPT2& layout,
                                                 std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                 ProcessGroup* device_pg) {
  if (cfg.zero.stage == 3) return make_gpu_stage3_engine(cfg, layout, std::move(model), host_pg, device_pg);
  return make_for_precision<GpuZeroEngine>(cfg, layout, std::move(model), host_pg, device_pg);
}

}  // namespace zt
