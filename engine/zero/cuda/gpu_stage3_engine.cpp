#include "engine/zero/cuda/gpu_stage3_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/config/config_parser.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/gpu_engine_common.h"
#include "engine/zero/cuda/host_memory_check.h"
#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/cuda/swapped_shard_uploads.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/param_swapper.h"
#include "engine/zero/unit_gather_planner.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cpu/half_convert.h"

namespace zt {
namespace {

// Ordering. Blocks come from the caching allocator through allocate(bytes), its default-stream tag: the allocator is
// stream-aware, but all of this engine's kernels are on one stream, so blocks are reused there only, and the
// collectives' streams (the backends', not visible through Work) are not declared with record_stream; what follows
// makes that safe. The model and every kernel of this engine run on the model's stream; the device process group
// runs its collectives on a stream of its own that waits for the legacy default stream, which is made to wait for
// the model's stream before each collective is issued. So a collective sees every kernel queued before it (the cast
// of the working copy, a unit's gradient, the add of an earlier reduce-scatter's result), and a buffer freed to the
// allocator before the issue is never written by the collective while a queued kernel still reads it. The other way,
// a collective's result is used only after its Work::wait() returned on the host (the data is then on the device),
// or, for a gather where the backend can (NCCL), after the model's stream was made to wait for it on the device
// (Work::wait_on_stream), so kernels queued after it see it; a gathered buffer freed after its unit's kernels is
// reused only by kernels queued after that wait, or by a collective ordered after them.
// Overlap that follows: a prefetched unit's all-gather runs while the kernels of the units before it (already
// queued) compute; a unit's reduce-scatter runs while the next unit's backward computes (it is waited one unit later).
// Offload (ZeRO-Offload / ZeRO-Infinity): with offload_optimizer (cpu or nvme) the fp32 master and Adam's state are
// HostOffloadOptimizer's, on the host or in swap files; the step streams the gradient partition down and the updated
// weights up in chunks, and the device keeps the working copy the gathers read. With offload_param (cpu) that
// working copy is on the host too (page-locked with pin_memory), refreshed by the host as each chunk is updated, and
// a unit's gather first uploads this rank's shard on a copy stream of the engine's own, ordered after the model's
// queued work (the block may have been read by it before it was freed) and before the collective (the legacy
// stream waits for the upload); with one rank the upload writes the unit's buffer, which the model's stream waits
// for when the planner finishes the gather. So the uploads of prefetched units run while the model computes. With
// offload_param nvme the shards come from ParamSwapper's buffers instead (SwappedShardUploads keeps each pinned until
// its upload is done), and each step's updated chunks are written to its swap file.
template <typename S>
class GpuStage3Engine : public ZeroEngine, private UnitHooks, private UnitGatherer, private UploadEvents {
  static constexpr bool kMixed = !std::is_same_v<S, float>;

 public:
  GpuStage3Engine(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                  std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg, ProcessGroup* device_pg)
      : cfg_(cfg),
        model_(std::move(model)),
        host_pg_(host_pg),
        device_pg_(device_pg),
        map_(layout, host_pg.size()),
        n_(layout.num_params()),
        part_n_(map_.partition_numel()),
        rank_(host_pg.rank()),
        world_(host_pg.size()),
        stream_(static_cast<cudaStream_t>(model_->stream())),
        alloc_(model_->allocator()),
        scaler_(cfg.fp16),
        gathered_(map_.units().size(), nullptr),
        gather_work_(map_.units().size()),
        unit_grads_(map_.units().size(), nullptr) {
    const ZeroConfig& z = cfg.zero;
    const bool offload_optimizer = z.offload_optimizer.device != OffloadDevice::None;
    param_offload_ = z.offload_param.device != OffloadDevice::None;
    if (param_offload_ && !offload_optimizer)
      throw RuntimeError("the GPU stage-3 engine offloads parameters (zero_optimization.offload_param.device " +
                         std::string(offload_device_name(z.offload_param.device)) +
                         ") only together with the optimizer (zero_optimization.offload_optimizer.device cpu or nvme)");
    if (offload_optimizer && z.offload_optimizer.ratio < 1.0)
      throw RuntimeError("the GPU stage-3 engine offloads the whole optimizer: zero_optimization.offload_optimizer."
                         "ratio " + std::to_string(z.offload_optimizer.ratio) + " (partial offload) is not supported");
    check_gpu_engine_args(cfg, n_, *model_, storage_of<S>(), world_, device_pg_);
    if (model_->device_params())
      throw RuntimeError("the GPU stage-3 engine needs a GPU model built without full-size buffers");
    decoupled_ = cfg.optimizer.type == OptimizerType::AdamW || cfg.optimizer.adam_w_mode;
    ranges_ = map_.decay_ranges(layout.params(), rank_);
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));

    // The partition's buffers, for the whole run.
    if (!offload_optimizer) {
      master_ = take<float>(part_n_);
      exp_avg_ = take<float>(part_n_);  // SGD: the momentum buffer
      if (has_second_state(cfg.optimizer)) exp_avg_sq_ = take<float>(part_n_);
    }
    grads_ = take<float>(part_n_);
    if (param_offload_)
      make_host_working(cfg);
    else if (kMixed || offload_optimizer)
      working_ = take<S>(part_n_);
    else
      working_ = reinterpret_cast<S*>(master_);  // fp32: the gathers read the master itself
    partials_ = take<float>(cuda::kSumSquaresPartials);
    sum_squares_ = take<double>(1);
    overflow_flag_ = take<int>(1);
    size_t max_shard = 0;
    std::vector<size_t> padded;
    for (const UnitShard& u : map_.units()) {
      max_shard = std::max(max_shard, u.shard);
      padded.push_back(u.padded);
    }
    if (world_ > 1)
      for (float*& s : reduce_out_) s = take<float>(max_shard);
    ZT_CUDA_CHECK(cudaMemsetAsync(grads_, 0, part_n_ * sizeof(float), stream_));
    std::vector<float> part(part_n_);
    map_.flat_to_partition(init, part.data(), rank_);
    planner_ = std::make_unique<UnitGatherPlanner>(std::move(padded), cfg.zero, static_cast<UnitGatherer&>(*this));
    if (offload_optimizer) {
      offload_ = std::make_unique<HostOffloadOptimizer>(cfg, part_n_, ranges_, part.data(), stream_, rank_);
      set_working_from_host(part.data());
      gather_persistent_units();
    } else {
      ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_, 0, part_n_ * sizeof(float), stream_));
      if (exp_avg_sq_) ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_, 0, part_n_ * sizeof(float), stream_));
      upload(master_, part.data(), part_n_);
      publish_master();
    }
    model_->set_hooks(this);
  }

  ~GpuStage3Engine() override {
    model_->set_hooks(nullptr);
    try {
      finish_reductions();
      planner_->drop_all();
    } catch (...) {  // a failed collective already reported its error; the memory goes with the allocator
    }
    offload_.reset();  // waits for its copies, which may target grads_ after an interrupted step
    cudaStreamSynchronize(stream_);
    if (param_copy_ != nullptr) cudaStreamSynchronize(param_copy_);  // uploads read the host copy or the swapper
    shard_uploads_.reset();
    for (void* p : transient_) alloc_.free(p);
    for (void* p : blocks_) alloc_.free(p);
    for (cudaEvent_t e : uploaded_) cudaEventDestroy(e);
    if (param_copy_ != nullptr) cudaStreamDestroy(param_copy_);
    cudaEventDestroy(compute_done_);
  }

  void begin_step() override {
    ZT_CUDA_CHECK(cudaMemsetAsync(grads_, 0, part_n_ * sizeof(float), stream_));
    planner_->begin_step();
  }

  void end_micro_batch(bool) override {
    cuda::NvtxRange range("reduce");
    finish_reductions();
  }

  StepResult step(double lr, int64_t step) override {
    cuda::NvtxRange range("optimizer");
    StepResult r;
    finish_reductions();
    planner_->drop_all();  // gathered copies are stale after the update (also after a skipped step's gathers)
    DeviceGradients grads(grads_, part_n_, stream_, partials_, sum_squares_, overflow_flag_);
    if (offload_) {
      // No upload from the host working copy may still be reading it when the host rewrites it.
      if (param_copy_ != nullptr) ZT_CUDA_CHECK(cudaStreamSynchronize(param_copy_));
      if (shard_uploads_) shard_uploads_->release_all();  // the swap file is rewritten: nothing may stay pinned
      if (finish_gradients(host_pg_, scaler_, grads, cfg_.gradient_clipping, /*partitioned=*/true, r)) {
        ZT_CUDA_CHECK_LAUNCH("finish_gradients");
        if (swapper_) {  // each updated chunk goes to the parameter swap file; nothing goes up
          r.io_wait_s = offload_->step(grads_, lr, step, [&](size_t begin, size_t len, const float* master) {
            swapper_->write_range(begin, len, master);
          }, /*upload=*/false);
          swapper_->finish_write();
        } else if (param_offload_) {  // each updated chunk becomes the host working copy; nothing goes up
          r.io_wait_s = offload_->step(grads_, lr, step, [&](size_t begin, size_t len, const float* master) {
            to_storage(host_working_ + begin, master, len);
          }, /*upload=*/false);
        } else {  // the updated fp32 weights come back over the gradient partition, then into the working copy
          r.io_wait_s = offload_->step(grads_, lr, step);
          working_from_device_fp32(grads_);
        }
      }
      gather_persistent_units();
      return r;
    }
    if (finish_gradients(host_pg_, scaler_, grads, cfg_.gradient_clipping, /*partitioned=*/true, r)) {
      optimizer_update(cfg_.optimizer, decoupled_, master_, grads_, exp_avg_, exp_avg_sq_, ranges_, lr, step,
                       stream_);
    }
    publish_master();
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    // Device memory. Only the partition is resident: the working copy (fp32: the master itself), the fp32 gradient
    // partition, and Adam's state (with the fp32 master in 16 bits). With offload_optimizer the master and Adam's
    // state are not on the device (the working copy is, also in fp32), with offload_param the working copy is not
    // either. Gathered units, unit gradients, upload staging and the reduce-scatter outputs are transient: their
    // peak is the comm term.
    m.param_bytes = param_offload_ ? 0 : part_n_ * sizeof(S);
    m.grad_bytes = part_n_ * sizeof(float);
    m.optimizer_bytes =
        offload_ ? 0 : ((kMixed ? 1 : 0) + optimizer_state_names(cfg_.optimizer).size()) * part_n_ * sizeof(float);
    m.comm_bytes = peak_transient_bytes_ + (world_ > 1 ? 2 * max_shard_bytes() : 0);
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  // Collective: each unit's fp32 master shards gathered in turn through one unit-sized buffer.
  void gather_full_params(float* out) override {
    finish_reductions();
    size_t largest = 0;
    for (const UnitShard& u : map_.units()) largest = std::max(largest, u.padded);
    if (offload_) {  // the master partitions are on the host: gathered over the host group
      std::vector<float> master(part_n_);
      offload_->export_state("master", master.data());
      std::vector<float> scratch;
      allgather_partition(map_, host_pg_, master.data(), out,
                          static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)), scratch);
      return;
    }
    float* unit_buf = world_ > 1 ? static_cast<float*>(acquire(largest * sizeof(float))) : nullptr;
    for (const UnitShard& u : map_.units()) {
      const float* from = master_ + u.local_offset;  // one rank: its shard is the whole padded unit
      if (world_ > 1) {
        order_comm_after_compute();
        device_pg_->allgather_async(master_ + u.local_offset, unit_buf, u.shard, DType::F32)->wait();
        from = unit_buf;
      }
      ZT_CUDA_CHECK(cudaMemcpyAsync(out + u.flat_offset, from, u.numel * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream_));
      ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    if (unit_buf) give_back(unit_buf);
  }

  int stage() const override { return 3; }
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
    ZT_CUDA_CHECK(cudaMemcpyAsync(partition, state_buffer(name), part_n_ * sizeof(float), cudaMemcpyDeviceToHost,
                                  stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void import_full(const std::string& name, const float* flat) override {
    std::vector<float> part(part_n_);
    map_.flat_to_partition(flat, part.data(), rank_);
    if (offload_) {
      offload_->import_state(name, part.data());
      return;
    }
    upload(state_buffer(name), part.data(), part_n_);
  }

  void finish_import() override {
    planner_->drop_all();
    if (offload_) {  // the working copy follows the imported master, read back from the host or the swap file
      if (param_copy_ != nullptr) ZT_CUDA_CHECK(cudaStreamSynchronize(param_copy_));
      if (shard_uploads_) shard_uploads_->release_all();
      std::vector<float> master(part_n_);
      offload_->export_state("master", master.data());
      set_working_from_host(master.data());
      gather_persistent_units();
    } else {
      publish_master();
    }
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  ScalerState scaler_state() const override {
    return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
  }
  void set_scaler_state(const ScalerState& s) override { scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps); }

  const UnitGatherPlanner& planner() const { return *planner_; }

 private:
  struct PendingReduce {
    int unit = 0;
    float* wire = nullptr;  // the unit's padded fp32 gradient, the collective's input
    float* out = nullptr;   // this rank's averaged shard
    std::shared_ptr<Work> work;
  };

  // ---- unit hooks (called by the model, in the CPU model's order) ----
  void before_forward(int unit) override {
    planner_->fetch(unit);
    model_->set_unit_buffers(unit, gathered_[idx(unit)], nullptr);
  }
  void after_forward(int unit) override {
    planner_->release(unit);
    check_gathers();
  }
  void before_backward(int unit) override {
    // The tied unit 0 is used twice in backward (LM head, then embeddings): one gradient buffer for both.
    S*& g = unit_grads_[idx(unit)];
    if (!g) {
      const size_t bytes = map_.units()[idx(unit)].padded * sizeof(S);
      g = static_cast<S*>(acquire(bytes));
      ZT_CUDA_CHECK(cudaMemsetAsync(g, 0, bytes, stream_));  // the padding stays zero: it is reduced too
    }
    planner_->fetch(unit);
    model_->set_unit_buffers(unit, gathered_[idx(unit)], g);
  }
  void after_backward(int unit) override {
    planner_->release(unit);
    check_gathers();
    reduce_unit(unit);
  }

  // ---- UnitGatherer: the planner's gathers on the device ----
  void start(int unit) override {
    const UnitShard& u = map_.units()[idx(unit)];
    S* buf = static_cast<S*>(acquire(u.padded * sizeof(S)));
    gathered_[idx(unit)] = buf;
    if (param_offload_) {
      start_from_host(unit, buf);
      return;
    }
    if (world_ == 1) {  // the shard is the whole padded unit
      ZT_CUDA_CHECK(cudaMemcpyAsync(buf, working_ + u.local_offset, u.padded * sizeof(S), cudaMemcpyDeviceToDevice,
                                    stream_));
      return;
    }
    order_comm_after_compute();
    gather_work_[idx(unit)] = device_pg_->allgather_async(working_ + u.local_offset, buf, u.shard, dtype_of<S>());
  }
  // The model's stream waits for the gather on the device where the backend can (NCCL), so the host goes on queuing
  // the unit's kernels; the host checks the gather (failure, timeout) after they are queued, in check_gathers.
  void finish(int unit) override {
    std::shared_ptr<Work>& w = gather_work_[idx(unit)];
    if (w) {
      if (w->wait_on_stream(stream_))
        unchecked_gathers_.push_back(std::move(w));
      else
        w->wait();
      w.reset();
    }
    if (!param_offload_) return;
    // One rank: the model's stream reads the unit's buffer after its upload; more: the collective reads the uploaded
    // shard, and the model's stream now waits for it (above, on the device or the host), so the staging block can go
    // back: whoever takes it next is ordered after that stream (kernels on it, or a copy or collective ordered after
    // it by compute_done_).
    if (world_ == 1) ZT_CUDA_CHECK(cudaStreamWaitEvent(stream_, uploaded_[idx(unit)], 0));
    if (staging_[idx(unit)] != nullptr) {
      give_back(staging_[idx(unit)]);
      staging_[idx(unit)] = nullptr;
    }
  }

  // offload_param: this rank's shard of the unit from the host working copy, on the copy stream (see the top).
  void start_from_host(int unit, S* buf) {
    const UnitShard& u = map_.units()[idx(unit)];
    const S* src = shard_uploads_ ? static_cast<const S*>(shard_uploads_->take(unit)) : host_working_ + u.local_offset;
    ZT_CUDA_CHECK(cudaEventRecord(compute_done_, stream_));
    ZT_CUDA_CHECK(cudaStreamWaitEvent(param_copy_, compute_done_, 0));
    cudaEvent_t uploaded = uploaded_[idx(unit)];
    if (world_ == 1) {  // the shard is the whole padded unit
      ZT_CUDA_CHECK(cudaMemcpyAsync(buf, src, u.padded * sizeof(S), cudaMemcpyHostToDevice, param_copy_));
      ZT_CUDA_CHECK(cudaEventRecord(uploaded, param_copy_));
      return;
    }
    S* staging = static_cast<S*>(acquire(u.shard * sizeof(S)));
    staging_[idx(unit)] = staging;
    ZT_CUDA_CHECK(cudaMemcpyAsync(staging, src, u.shard * sizeof(S), cudaMemcpyHostToDevice, param_copy_));
    ZT_CUDA_CHECK(cudaEventRecord(uploaded, param_copy_));
    order_comm_after_compute();
    ZT_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, uploaded, 0));
    gather_work_[idx(unit)] = device_pg_->allgather_async(staging, buf, u.shard, dtype_of<S>());
  }
  // Called before anything that blocks the host on the model's stream, which a hung gather would block forever.
  void check_gathers() {
    for (std::shared_ptr<Work>& w : unchecked_gathers_) w->wait();
    unchecked_gathers_.clear();
  }
  void drop(int unit) override {
    check_gathers();  // a prefetch dropped unused (step, import) was finished just before
    give_back(gathered_[idx(unit)]);
    gathered_[idx(unit)] = nullptr;
  }

  // The unit's gradient (complete for this micro-batch) reduce-scattered and averaged into the gradient partition
  // (+=, as micro-batches accumulate), in fp32 as the CPU engines reduce: 16-bit gradients are widened exactly first.
  void reduce_unit(int unit) {
    const UnitShard& u = map_.units()[idx(unit)];
    S*& g = unit_grads_[idx(unit)];
    float* wire = nullptr;
    if constexpr (kMixed) {
      wire = static_cast<float*>(acquire(u.padded * sizeof(float)));
      cuda::cast(wire, g, u.padded, stream_);
      give_back(g);  // its next user is queued on this stream, after the cast
    } else {
      wire = g;
    }
    g = nullptr;
    float* part = grads_ + u.local_offset;
    if (world_ == 1) {
      cuda::residual_forward(part, part, wire, u.shard, stream_);
      give_back(wire);
      return;
    }
    float* out = reduce_out_[next_out_];
    next_out_ ^= 1;
    order_comm_after_compute();
    pending_.push_back({unit, wire, out, device_pg_->reduce_scatter_async(wire, out, u.shard, DType::F32,
                                                                          ReduceOp::Avg)});
    // One reduce-scatter stays in flight while the next unit's backward is queued; with two output buffers, the
    // one a new collective writes was last read by an add queued before it was issued.
    while (pending_.size() > 1) complete_front_reduction();
  }

  void complete_front_reduction() {
    PendingReduce p = pending_.front();
    pending_.pop_front();
    p.work->wait();
    const UnitShard& u = map_.units()[idx(p.unit)];
    float* part = grads_ + u.local_offset;
    cuda::residual_forward(part, part, p.out, u.shard, stream_);
    give_back(p.wire);  // the collective that read it is done
  }

  void finish_reductions() {
    check_gathers();
    while (!pending_.empty()) complete_front_reduction();
  }

  // The master changed (start, update, import): the working copy follows it, and the planner drops stale units
  // and gathers the persistent ones again.
  void publish_master() {
    if constexpr (kMixed) cuda::cast(working_, master_, part_n_, stream_);
    gather_persistent_units();
  }
  // The planner's end of step gathers the persistent units again; their gathers are checked at once.
  void gather_persistent_units() {
    planner_->end_step();
    check_gathers();
  }

  // ---- offload ----
  // The host working copy of offload_param (pinned with pin_memory) and what its uploads need.
  // The host working copy of offload_param (cpu: pinned with pin_memory; nvme: ParamSwapper's swap file and
  // buffers) and what its uploads need.
  void make_host_working(const Config& cfg) {
    const bool pinned = cfg.zero.offload_param.pin_memory;
    ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&param_copy_, cudaStreamNonBlocking));
    uploaded_.resize(map_.units().size(), nullptr);
    for (cudaEvent_t& e : uploaded_) ZT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    staging_.resize(map_.units().size(), nullptr);
    if (cfg.zero.offload_param.device == OffloadDevice::Nvme) {
      swapper_ = std::make_unique<ParamSwapper>(map_, cfg, rank_, working_precision(cfg));
      shard_uploads_ = std::make_unique<SwappedShardUploads>(*swapper_, static_cast<UploadEvents&>(*this),
                                                             map_.units().size());
      if (rank_ == 0)
        spdlog::info("offload_param to nvme on the GPU: the working partition is in {}; each gather reads the "
                     "unit's shard into one of {} MiB of buffers and uploads it from there",
                     swapper_->path(), swapper_->buffer_bytes() >> 20);
      return;
    }
    check_host_memory(part_n_ * sizeof(S), "zero_optimization.offload_param.device cpu (the working partition)",
                      host_memory_available());
    host_working_storage_ = make_host_array<S>(part_n_, pinned);
    host_working_ = host_working_storage_.get();
    if (rank_ == 0)
      spdlog::info("offload_param to cpu on the GPU: the {} MiB working partition is in {} host memory; each "
                   "gather uploads the unit's shard first", (part_n_ * sizeof(S)) >> 20,
                   pinned ? "pinned" : "pageable (pin_memory: false)");
  }

  // UploadEvents (offload_param nvme): a unit's upload from its swapper buffer, by its event on the copy stream.
  bool done(int unit) override {
    const cudaError_t e = cudaEventQuery(uploaded_[idx(unit)]);
    if (e == cudaErrorNotReady) {
      // Not an error, but the runtime may keep it as the last error, and the next ZT_CUDA_CHECK_LAUNCH would throw it.
      (void)cudaGetLastError();
      return false;
    }
    ZT_CUDA_CHECK(e);
    return true;
  }
  void wait(int unit) override { ZT_CUDA_CHECK(cudaEventSynchronize(uploaded_[idx(unit)])); }

  // fp32 master values into the storage type, rounded to nearest even as the device cast.
  static void to_storage(S* out, const float* in, size_t n) {
    if constexpr (std::is_same_v<S, float>)
      std::memcpy(out, in, n * sizeof(float));
    else if constexpr (std::is_same_v<S, __nv_bfloat16>)
      float_to_bf16_array(in, reinterpret_cast<uint16_t*>(out), n);
    else
      float_to_fp16_array(in, reinterpret_cast<uint16_t*>(out), n);
  }

  // With offload_optimizer: the working copy from the fp32 master partition on the host (start, import).
  void set_working_from_host(const float* master) {
    if (swapper_) {
      swapper_->write_partition(master);
      return;
    }
    if (param_offload_) {
      to_storage(host_working_, master, part_n_);
      return;
    }
    upload(grads_, master, part_n_);  // grads_ is zeroed again at the next begin_step
    working_from_device_fp32(grads_);
  }
  // ... or from the fp32 weights on the device (after the offloaded step uploaded them).
  void working_from_device_fp32(const float* weights) {
    if constexpr (kMixed)
      cuda::cast(working_, weights, part_n_, stream_);
    else
      ZT_CUDA_CHECK(cudaMemcpyAsync(working_, weights, part_n_ * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }

  // ---- buffers ----
  static size_t idx(int unit) { return static_cast<size_t>(unit); }

  template <typename U>
  U* take(size_t n) {
    void* p = alloc_.allocate(n * sizeof(U));
    blocks_.push_back(p);
    return static_cast<U*>(p);
  }

  // Transient buffers (gathered units, unit gradients), counted for memory().
  void* acquire(size_t bytes) {
    void* p = alloc_.allocate(bytes);
    transient_.push_back(p);
    transient_bytes_ += bytes;
    transient_sizes_.push_back(bytes);
    peak_transient_bytes_ = std::max(peak_transient_bytes_, transient_bytes_);
    return p;
  }
  void give_back(void* p) {
    for (size_t i = 0; i < transient_.size(); ++i) {
      if (transient_[i] != p) continue;
      transient_bytes_ -= transient_sizes_[i];
      transient_[i] = transient_.back();
      transient_sizes_[i] = transient_sizes_.back();
      transient_.pop_back();
      transient_sizes_.pop_back();
      alloc_.free(p);
      return;
    }
    throw RuntimeError("the GPU stage-3 engine: a transient buffer given back twice");
  }

  size_t max_shard_bytes() const {
    size_t m = 0;
    for (const UnitShard& u : map_.units()) m = std::max(m, u.shard);
    return m * sizeof(float);
  }

  float* state_buffer(const std::string& name) {
    return optimizer_state_buffer(cfg_.optimizer, name, master_, exp_avg_, exp_avg_sq_);
  }

  void upload(float* dev, const float* host, size_t n) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void order_comm_after_compute() { order_comm_after(stream_, compute_done_); }

  const Config& cfg_;
  std::shared_ptr<cuda::GPT2Cuda> model_;
  ProcessGroup& host_pg_;
  ProcessGroup* device_pg_;
  PartitionMap map_;
  size_t n_, part_n_;
  int rank_, world_;
  cudaStream_t stream_;
  cuda::CachingAllocator& alloc_;
  LossScaler scaler_;
  bool decoupled_ = true;
  std::vector<DecayRange> ranges_;  // over the partition
  std::vector<void*> blocks_;       // for the whole run
  std::vector<void*> transient_;
  std::vector<size_t> transient_sizes_;
  size_t transient_bytes_ = 0, peak_transient_bytes_ = 0;
  cudaEvent_t compute_done_ = nullptr;
  float *master_ = nullptr, *exp_avg_ = nullptr, *exp_avg_sq_ = nullptr, *grads_ = nullptr;
  S* working_ = nullptr;  // what the gathers read: the 16-bit copy of the master, or the master in fp32
  float* partials_ = nullptr;
  double* sum_squares_ = nullptr;
  int* overflow_flag_ = nullptr;
  float* reduce_out_[2] = {nullptr, nullptr};
  int next_out_ = 0;
  std::deque<PendingReduce> pending_;
  std::vector<S*> gathered_;  // per unit: its full parameters while the planner holds them
  std::vector<std::shared_ptr<Work>> gather_work_;
  std::vector<std::shared_ptr<Work>> unchecked_gathers_;  // waited on the device, not yet on the host
  std::vector<S*> unit_grads_;  // per unit: its full gradient from its first backward use to its reduction
  std::unique_ptr<UnitGatherPlanner> planner_;
  // offload_optimizer: the master and Adam's state on the host or in swap files.
  std::unique_ptr<HostOffloadOptimizer> offload_;
  // offload_param: the working partition on the host, its uploads' stream, per unit the upload's event and (world
  // > 1) the staging block the collective reads.
  bool param_offload_ = false;
  HostArray<S> host_working_storage_{nullptr, nullptr};
  S* host_working_ = nullptr;
  cudaStream_t param_copy_ = nullptr;
  std::vector<cudaEvent_t> uploaded_;
  std::vector<S*> staging_;
  // offload_param nvme: the working partition's swap file and its shards' way to the device.
  std::unique_ptr<ParamSwapper> swapper_;
  std::unique_ptr<SwappedShardUploads> shard_uploads_;
};

}  // namespace

std::unique_ptr<ZeroEngine> make_gpu_stage3_engine(const Config& cfg, const GPT2& layout,
                                                   const InitialWeights& init,
                                                   std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                   ProcessGroup* device_pg) {
  return make_for_precision<GpuStage3Engine>(cfg, layout, init, std::move(model), host_pg, device_pg);
}

}  // namespace zt
