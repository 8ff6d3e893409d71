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
#include "engine/zero/gradient_reduce_schedule.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/grad_update.h"

namespace zt {
namespace {

// S: the model's storage type. In fp32 the update runs on the model's own parameters at stage 0, as before; in
// bf16/fp16 every stage keeps an fp32 master (stage 0: of everything, stages 1-2: of the partition) and fp32
// reduced gradients, as the CPU engines and DeepSpeed's mixed-precision optimizers do.
// Reduction during backward: through the model's unit hooks each unit's after_backward tells the schedule
// (engine/zero/gradient_reduce_schedule.h) that its gradient is complete; a bucket of units (reduce_bucket_size
// elements, in backward order) is copied out and its collective issued as soon as its last unit is complete, ordered
// after the kernels queued so far (order_comm_after), so it runs while the rest of backward computes. Stages 0-1 do
// this during the last micro-batch's backward (announced by begin_micro_batch; unannounced, everything is reduced at
// the boundary), stage 2 during every micro-batch's, adding each micro-batch's reduced shards into the fp32 gradient
// partition. A bucket is completed at the end of the micro-batch (with overlap_comm; at stage 2 earlier when the next
// bucket needs its staging slot) or right after its launch (without): the model's stream waits for the collective on the device (Work::wait_on_stream) where the backend can,
// on the host otherwise. Every collective's buffers are the engine's own for the whole run (no transient block is
// handed to another stream), so no record_stream is needed.
// Stage 2 holds no full-size gradient in the model: each unit's gradient is written into a buffer of its own, taken
// from the caching allocator at the unit's first backward use and given back once it is copied into the staging at
// its after_backward (the tied unit 0 holds its buffer from the LM head's backward to the embeddings').
template <typename S>
class GpuZeroEngine : public ZeroEngine, private UnitHooks, private BucketReducer {
  static constexpr bool kMixed = !std::is_same_v<S, float>;
  // Stage 2's staging slots: one bucket's collective in flight while the next bucket is filled, as DeepSpeed's
  // double-buffered reduce_bucket_size buffers.
  static constexpr size_t kStage2StagingSlots = 2;

 public:
  GpuZeroEngine(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg, ProcessGroup* device_pg)
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
    unit_grads_.assign(map_.units().size(), nullptr);
    if (stage_ == 2) model_->drop_full_grads();  // before the buffers below, which may reuse its memory

    // Every device buffer of the step is taken here, from the model's caching allocator: a step allocates nothing.
    // With the optimizer offloaded (stages 1-2) the master partition and Adam's state live in host memory (cpu) or
    // in swap files (nvme) instead.
    const bool offload = partitioned_ && cfg.zero.offload_optimizer.device != OffloadDevice::None;
    if (!offload) {
      exp_avg_ = take<float>(state_n_);  // SGD: the momentum buffer
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_, 0, state_n_ * sizeof(float), stream_));
      if (has_second_state(cfg.optimizer)) {
        exp_avg_sq_ = take<float>(state_n_);
        ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_, 0, state_n_ * sizeof(float), stream_));
      }
    }
    partials_ = take<float>(cuda::kSumSquaresPartials);
    sum_squares_ = take<double>(1);
    overflow_flag_ = take<int>(1);
    plan_reduction();
    if (partitioned_) {
      padded_n_ = staging_.total;
      padded_ = take<float>(padded_n_);
      gather_chunks_ = plan_gather_chunks(map_, padded_n_);
      reduced_ = take<float>(state_n_);
      std::vector<float> part(state_n_);
      map_.flat_to_partition(init, part.data(), rank_);
      if (offload) {
        offload_ = std::make_unique<HostOffloadOptimizer>(cfg, state_n_, ranges_, part.data(), stream_, rank_);
      } else {
        master_ = take<float>(state_n_);
        upload(master_, part.data(), state_n_);
      }
    } else if constexpr (kMixed) {
      master_ = take<float>(n_);  // the initial fp32 weights, before their rounding into the model
      reduced_ = take<float>(n_);
      for_each_initial_chunk(init, [&](size_t at, size_t n, const float* host) { upload(master_ + at, host, n); });
    } else {
      master_ = model_params();
      reduced_ = model_grads();
    }
    for_each_initial_chunk(init, [&](size_t at, size_t n, const float* host) { model_->upload_params(at, n, host); });
    model_->set_hooks(this);
  }

  ~GpuZeroEngine() override {
    model_->set_hooks(nullptr);
    offload_.reset();  // waits for its copies, which may target reduced_ after an interrupted step
    try {
      wait_collectives();
    } catch (...) {  // a failed collective was already reported by the step it cut short
    }
    cudaStreamSynchronize(stream_);
    free_unit_grads();
    for (void* p : blocks_) alloc_.free(p);
    cudaEventDestroy(grads_ready_);
  }

  void begin_step() override {
    wait_collectives();  // none unless an exception cut the last step short
    schedule_->abandon();
    free_unit_grads();
    model_->zero_grad();  // stages 0-1 (stage 2: each unit's buffer is zeroed when taken)
    if (stage_ == 2) ZT_CUDA_CHECK(cudaMemsetAsync(reduced_, 0, state_n_ * sizeof(float), stream_));
  }

  void begin_micro_batch(bool last) override {
    if (stage_ < 2) reduce_in_backward_ = last;
  }

  void end_micro_batch(bool last) override {
    if (stage_ < 2 && !last) {
      if (reduce_in_backward_)
        throw RuntimeError("the GPU engine: begin_micro_batch announced the step's last micro-batch, "
                           "end_micro_batch says it was not");
      return;
    }
    cuda::NvtxRange range("reduce_wait");
    // Stage 2 always reduces in backward; stages 0-1 when announced, else the whole gradient now.
    if (stage_ == 2 || reduce_in_backward_)
      schedule_->finish();
    else
      schedule_->reduce_all();
    reduce_in_backward_ = false;
    if constexpr (kMixed) {
      // Stages 0-1 round the reduced gradient to the storage type once (the CPU engines' rule); stage 2 sums each
      // micro-batch's fp32 reduction without rounding, as the CPU stage 2 does.
      if (stage_ < 2) cuda::round_to_storage<S>(reduced_, state_n_, stream_);
    }
    wait_collectives();  // the kernels that use the results are queued; a failure or timeout is reported here
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
    optimizer_update(cfg_.optimizer, decoupled_, master_, reduced_, exp_avg_, exp_avg_sq_, ranges_, lr, step, stream_);
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
    // Stage 2: only the fp32 gradient partition (the units' own buffers are transient, with the comm term).
    m.grad_bytes = stage_ == 2 ? state_n_ * sizeof(float)
                               : n_ * sizeof(S) + (!partitioned_ && kMixed ? n_ * sizeof(float) : 0);
    // (fp32 master, where it is not the model's own parameters,) exp_avg, exp_avg_sq (SGD: momentum_buffer)
    m.optimizer_bytes =
        ((partitioned_ || kMixed ? 1 : 0) + optimizer_state_names(cfg_.optimizer).size()) * state_n_ * sizeof(float);
    // The staging (stage 1: every bucket padded; stage 2: its few bucket-sized slots); at stage 1 the reduced
    // partition, at stage 2 the peak of the units' gradient buffers.
    m.comm_bytes = !partitioned_ ? 0
                   : stage_ == 2 ? padded_n_ * sizeof(float) + peak_unit_grad_bytes_
                                 : (padded_n_ + state_n_) * sizeof(float);
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
    const std::vector<UnitShard>& units = map_.units();
    gather_in_chunks<float>(
        DType::F32, [&](const GatherChunk& c) -> const float* { return master_ + units[c.first].local_offset; },
        [&](size_t u, const float* unit) {
          ZT_CUDA_CHECK(cudaMemcpyAsync(out + units[u].flat_offset, unit, units[u].numel * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream_));
        });
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  int stage() const override { return stage_; }
  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override {
    std::vector<std::string> names = optimizer_state_names(cfg_.optimizer);
    names.insert(names.begin(), "master");
    return names;
  }

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

  float* state_buffer(const std::string& name) {
    return optimizer_state_buffer(cfg_.optimizer, name, master_, exp_avg_, exp_avg_sq_);
  }

  void upload(float* dev, const float* host, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void download(float* host, const float* dev, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void order_comm_after_compute() { order_comm_after(stream_, grads_ready_); }

  // ---- reduction during backward ----

  // Buckets of units in backward order (GPT-2 completes units L+1, L, ..., 1, 0), so a bucket is a run of
  // consecutive units: one range of the flat gradient (stage 0) and of the partition (stages 1-2). At stage 1
  // bucket b has its own region of the fp32 staging buffer (padded_, as many elements), laid out as the
  // reduce-scatter wants it (bucket_staging); at stage 2 the buckets share kStage2StagingSlots regions, each as large
  // as its largest bucket (shared_bucket_staging), a region refilled only once its previous bucket is completed
  // (claim_staging), so one bucket's collective runs while the next is filled and no full-size buffer exists.
  void plan_reduction() {
    const std::vector<UnitShard>& units = map_.units();
    std::vector<size_t> elements;
    std::vector<int> order;
    for (size_t u = 0; u < units.size(); ++u) {
      elements.push_back(partitioned_ ? units[u].padded : units[u].numel);
      order.insert(order.begin(), static_cast<int>(u));
      const size_t expected = u == 0 ? 0 : units[u - 1].flat_offset + units[u - 1].numel;
      if (units[u].flat_offset != expected)
        throw RuntimeError("the GPU engine: unit " + std::to_string(u) + " starts at " +
                           std::to_string(units[u].flat_offset) + " in the flat layout, not at " +
                           std::to_string(expected) + " (a bucket must be one range)");
    }
    schedule_ = std::make_unique<GradientReduceSchedule>(
        std::move(elements), order, static_cast<size_t>(std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1)),
        cfg_.zero.overlap_comm, static_cast<BucketReducer&>(*this), stage_ == 2 ? kStage2StagingSlots : 0);
    bucket_work_.resize(schedule_->buckets().size());
    if (stage_ == 2)
      staging_ = shared_bucket_staging(schedule_->buckets(), map_, schedule_->staging_slots());
    else if (partitioned_)
      staging_ = bucket_staging(schedule_->buckets(), map_);
  }

  void before_forward(int) override {}
  void after_forward(int) override {}
  void before_backward(int unit) override {
    if (stage_ != 2) return;
    S*& g = unit_grads_[static_cast<size_t>(unit)];
    if (g) return;  // the tied unit 0's second use (the embeddings after the LM head)
    const size_t bytes = map_.units()[static_cast<size_t>(unit)].numel * sizeof(S);
    g = static_cast<S*>(alloc_.allocate(bytes));
    unit_grad_bytes_ += bytes;
    peak_unit_grad_bytes_ = std::max(peak_unit_grad_bytes_, unit_grad_bytes_);
    ZT_CUDA_CHECK(cudaMemsetAsync(g, 0, bytes, stream_));
    model_->set_unit_buffers(unit, nullptr, g);
  }
  void after_backward(int unit) override {
    if (stage_ == 2) {  // this micro-batch's gradient of the unit into its bucket's staging, and its buffer back
      const size_t u = static_cast<size_t>(unit);
      const size_t bucket = schedule_->bucket_of(unit);
      schedule_->claim_staging(unit);  // the slot's previous bucket completed (queued on this stream) first
      copy_unit_shards(padded_ + staging_.base[bucket] + staging_.in_chunk[u], staging_.chunk[bucket],
                       map_.units()[u], unit_grads_[u]);
      release_unit_grad(unit);  // its next user is queued on this stream after the copy
    }
    if (stage_ == 2 || reduce_in_backward_) schedule_->unit_ready(unit);
  }

  void release_unit_grad(int unit) {
    S*& g = unit_grads_[static_cast<size_t>(unit)];
    if (!g) return;
    model_->set_unit_buffers(unit, nullptr, nullptr);
    alloc_.free(g);
    g = nullptr;
    unit_grad_bytes_ -= map_.units()[static_cast<size_t>(unit)].numel * sizeof(S);
  }
  void free_unit_grads() {
    for (size_t u = 0; u < unit_grads_.size(); ++u) release_unit_grad(static_cast<int>(u));
  }

  // Every unit of the bucket is complete: widen (16 bits) or copy it into the bucket's staging and issue the
  // bucket's collective after everything queued so far. Gradients are reduced in fp32, as the CPU engines reduce
  // (DeepSpeed reduces in the 16-bit type by default).
  void launch(size_t bucket) override {
    cuda::NvtxRange range("reduce_bucket");
    const ReduceBucket& b = schedule_->buckets()[bucket];
    const std::vector<UnitShard>& units = map_.units();
    const UnitShard& first = units[static_cast<size_t>(b.units.front())];
    if (!partitioned_) {  // stage 0: the bucket's flat range, all-reduced in place
      float* range_buf = reduced_ + first.flat_offset;
      if constexpr (kMixed) cuda::cast(range_buf, model_grads() + first.flat_offset, b.elements, stream_);
      if (world_ == 1) return;
      order_comm_after_compute();
      bucket_work_[bucket] = device_pg_->allreduce_async(range_buf, b.elements, DType::F32, ReduceOp::Avg);
      return;
    }
    const size_t chunk = staging_.chunk[bucket];
    float* staging = padded_ + staging_.base[bucket];
    if (stage_ == 1)  // stage 2's units were staged at their after_backward
      for (int u : b.units) {
        const size_t i = static_cast<size_t>(u);
        copy_unit_shards(staging + staging_.in_chunk[i], chunk, units[i], model_grads() + units[i].flat_offset);
      }
    float* out = bucket_output(bucket);
    if (world_ == 1) {  // the one shard of each unit is the whole padded unit
      if (stage_ == 1)
        ZT_CUDA_CHECK(cudaMemcpyAsync(out, staging, chunk * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    order_comm_after_compute();
    bucket_work_[bucket] = device_pg_->reduce_scatter_async(staging, out, chunk, DType::F32, ReduceOp::Avg);
  }

  // Stage 1: the rank's range of the partition gradient directly. Stage 2: in place in the staging (this rank's
  // chunk, which NCCL's in-place reduce-scatter writes and the staged path copies back to), added to the partition
  // by complete().
  float* bucket_output(size_t bucket) {
    const ReduceBucket& b = schedule_->buckets()[bucket];
    if (stage_ == 1) return reduced_ + map_.units()[static_cast<size_t>(b.units.front())].local_offset;
    return padded_ + staging_.base[bucket] + static_cast<size_t>(rank_) * staging_.chunk[bucket];
  }

  // The model's stream waits for the bucket's collective (on the device where the backend can); at stage 2 the
  // averaged shards are then added into the gradient partition (micro-batches accumulate in fp32).
  void complete(size_t bucket) override {
    if (const std::shared_ptr<Work>& w = bucket_work_[bucket]) {
      if (!w->wait_on_stream(stream_)) w->wait();
    }
    if (stage_ != 2) return;
    const ReduceBucket& b = schedule_->buckets()[bucket];
    float* part = reduced_ + map_.units()[static_cast<size_t>(b.units.front())].local_offset;
    cuda::residual_forward(part, part, bucket_output(bucket), staging_.chunk[bucket], stream_);
  }

  // On the host: every collective issued has finished (its failure or timeout is thrown here).
  void wait_collectives() {
    for (std::shared_ptr<Work>& w : bucket_work_) {
      if (!w) continue;
      std::shared_ptr<Work> done = std::move(w);
      w.reset();
      done->wait();
    }
  }

  // Unit u's gradient g (numel elements of the storage type) as fp32 shards: shard r into dst + r * pitch, the
  // padding beyond numel zero.
  void copy_unit_shards(float* dst, size_t pitch, const UnitShard& u, const S* g) {
    for (size_t r = 0; r < static_cast<size_t>(world_); ++r) {
      const size_t begin = std::min(u.numel, r * u.shard), n = std::min(u.numel - begin, u.shard);
      float* row = dst + r * pitch;
      if (n > 0) {
        if constexpr (kMixed) {
          cuda::cast(row, g + begin, n, stream_);
        } else {
          ZT_CUDA_CHECK(cudaMemcpyAsync(row, g + begin, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
        }
      }
      if (n < u.shard) ZT_CUDA_CHECK(cudaMemsetAsync(row + n, 0, (u.shard - n) * sizeof(float), stream_));
    }
  }

  // The partitioned weights gathered chunk by chunk (gather_chunks_: runs of units whose padded sizes fit the
  // staging, padded_n_ elements of U) through the staging, which is idle between reductions. chunk_partition(c)
  // gives this rank's shards of c's units in partition layout (unit c.first's first); use(u, unit) reads unit u's
  // padded gathered weights, on the stream, before the next chunk's allgather overwrites them (each chunk's
  // collectives are ordered after the work queued so far).
  template <typename U, typename ChunkPartition, typename Use>
  void gather_in_chunks(DType type, ChunkPartition chunk_partition, Use use) {
    const std::vector<UnitShard>& units = map_.units();
    U* gathered = reinterpret_cast<U*>(padded_);
    std::vector<std::shared_ptr<Work>> works;
    for (const GatherChunk& c : gather_chunks_) {
      const U* part = chunk_partition(c);
      const size_t first_local = units[c.first].local_offset;
      if (world_ > 1) {
        order_comm_after_compute();
        works.clear();
        for (size_t u = c.first; u < c.end; ++u)
          works.push_back(device_pg_->allgather_async(part + (units[u].local_offset - first_local),
                                                      gathered + c.at[u - c.first], units[u].shard, type));
        for (auto& w : works) w->wait();
      }
      // With one rank a unit's shard is the whole padded unit.
      for (size_t u = c.first; u < c.end; ++u)
        use(u, world_ > 1 ? gathered + c.at[u - c.first] : part + (units[u].local_offset - first_local));
    }
  }

  // The updated fp32 partition (this rank's: the master, or with offload the weights uploaded over the reduced
  // gradients), in the storage type, gathered chunk by chunk and copied into the model. In 16 bits each chunk's
  // partition is cast first (rounding commutes with gathering, and half the bytes travel) into the upper half of the
  // staging: the gathered 16-bit units fill at most its lower half (padded_n_ 16-bit elements), and the partition may
  // be the reduced gradients themselves, so it cannot be cast in place.
  void publish_params(const float* partition) {
    const std::vector<UnitShard>& units = map_.units();
    S* params = model_params();
    gather_in_chunks<S>(
        dtype_of<S>(),
        [&](const GatherChunk& c) -> const S* {
          const float* from = partition + units[c.first].local_offset;
          if constexpr (kMixed) {
            S* part16 = reinterpret_cast<S*>(padded_) + padded_n_;
            cuda::cast(part16, from, c.padded / static_cast<size_t>(world_), stream_);
            return part16;
          } else {
            return from;
          }
        },
        [&](size_t u, const S* unit) {
          ZT_CUDA_CHECK(cudaMemcpyAsync(params + units[u].flat_offset, unit, units[u].numel * sizeof(S),
                                        cudaMemcpyDeviceToDevice, stream_));
        });
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
  std::vector<GatherChunk> gather_chunks_;  // partitioned stages: the allgather's runs of units through padded_
  std::vector<void*> blocks_;
  cudaEvent_t grads_ready_ = nullptr;
  float *exp_avg_ = nullptr, *exp_avg_sq_ = nullptr, *partials_ = nullptr;
  double* sum_squares_ = nullptr;
  int* overflow_flag_ = nullptr;
  // master_: the fp32 weights the update runs on (the partition; at stage 0 an fp32 copy of everything in 16 bits,
  // or the model's own parameters in fp32; none with offload). reduced_: the fp32 reduced gradients it reads, laid
  // out alike.
  float *master_ = nullptr, *reduced_ = nullptr;
  // Partitioned stages only: the collectives' fp32 staging (stage 1: every unit padded; stage 2: a few bucket-sized
  // slots), padded_n_ elements, also the allgather's buffer between reductions.
  float* padded_ = nullptr;
  std::unique_ptr<HostOffloadOptimizer> offload_;  // offload_optimizer.device = cpu: master and state on the host
  std::unique_ptr<GradientReduceSchedule> schedule_;
  bool reduce_in_backward_ = false;  // stages 0-1: this micro-batch is the step's last (begin_micro_batch)
  BucketStaging staging_;            // stages 1-2: where each bucket's units are in padded_
  std::vector<std::shared_ptr<Work>> bucket_work_;  // per bucket: its collective until waited on the host
  std::vector<S*> unit_grads_;  // stage 2: per unit, its gradient buffer from its first backward use to its copy-out
  size_t unit_grad_bytes_ = 0, peak_unit_grad_bytes_ = 0;
  std::vector<float> gather_scratch_;  // gather_full_params with offload in 16 bits
};

}  // namespace

std::unique_ptr<ZeroEngine> make_gpu_zero_engine(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                                                 std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                 ProcessGroup* device_pg) {
  if (cfg.zero.stage == 3) return make_gpu_stage3_engine(cfg, layout, init, std::move(model), host_pg, device_pg);
  return make_for_precision<GpuZeroEngine>(cfg, layout, init, std::move(model), host_pg, device_pg);
}

}  // namespace zt
