#include "engine/zero/cuda/gpu_stage3_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/gpu_engine_common.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/unit_gather_planner.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"

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
template <typename S>
class GpuStage3Engine : public ZeroEngine, private UnitHooks, private UnitGatherer {
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
    if (cfg.zero.offload_param.device != OffloadDevice::None)
      throw RuntimeError("the GPU stage-3 engine keeps parameters on the device: zero_optimization.offload_param is "
                         "not supported with train.device cuda");
    if (cfg.zero.offload_optimizer.device != OffloadDevice::None)
      throw RuntimeError("the GPU stage-3 engine keeps the optimizer state on the device: "
                         "zero_optimization.offload_optimizer is not supported with train.device cuda at stage 3");
    check_gpu_engine_args(cfg, n_, *model_, storage_of<S>(), world_, device_pg_);
    if (model_->device_params())
      throw RuntimeError("the GPU stage-3 engine needs a GPU model built without full-size buffers");
    decoupled_ = cfg.optimizer.type == OptimizerType::AdamW || cfg.optimizer.adam_w_mode;
    ranges_ = map_.decay_ranges(layout.params(), rank_);
    ZT_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));

    // The partition's buffers, for the whole run.
    master_ = take<float>(part_n_);
    exp_avg_ = take<float>(part_n_);  // SGD: the momentum buffer
    if (has_second_state(cfg.optimizer)) exp_avg_sq_ = take<float>(part_n_);
    grads_ = take<float>(part_n_);
    if constexpr (kMixed)
      working_ = take<S>(part_n_);
    else
      working_ = master_;  // fp32: the gathers read the master itself
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
    ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_, 0, part_n_ * sizeof(float), stream_));
    if (exp_avg_sq_) ZT_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_, 0, part_n_ * sizeof(float), stream_));
    ZT_CUDA_CHECK(cudaMemsetAsync(grads_, 0, part_n_ * sizeof(float), stream_));
    std::vector<float> part(part_n_);
    map_.flat_to_partition(init, part.data(), rank_);
    upload(master_, part.data(), part_n_);

    planner_ = std::make_unique<UnitGatherPlanner>(std::move(padded), cfg.zero, static_cast<UnitGatherer&>(*this));
    publish_master();
    model_->set_hooks(this);
  }

  ~GpuStage3Engine() override {
    model_->set_hooks(nullptr);
    try {
      finish_reductions();
      planner_->drop_all();
    } catch (...) {  // a failed collective already reported its error; the memory goes with the allocator
    }
    cudaStreamSynchronize(stream_);
    for (void* p : transient_) alloc_.free(p);
    for (void* p : blocks_) alloc_.free(p);
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
    if (finish_gradients(host_pg_, scaler_, grads, cfg_.gradient_clipping, /*partitioned=*/true, r)) {
      optimizer_update(cfg_.optimizer, decoupled_, master_, grads_, exp_avg_, exp_avg_sq_, ranges_, lr, step,
                       stream_);
    }
    publish_master();
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    // Only the partition is resident: the working copy (fp32: the master itself), the fp32 gradient partition, and
    // Adam's state (with the fp32 master in 16 bits). Gathered units, unit gradients and the reduce-scatter outputs
    // are transient: their peak is the comm term.
    m.param_bytes = part_n_ * sizeof(S);
    m.grad_bytes = part_n_ * sizeof(float);
    m.optimizer_bytes = ((kMixed ? 1 : 0) + optimizer_state_names(cfg_.optimizer).size()) * part_n_ * sizeof(float);
    m.comm_bytes = peak_transient_bytes_ + (world_ > 1 ? 2 * max_shard_bytes() : 0);
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  // Collective: each unit's fp32 master shards gathered in turn through one unit-sized buffer.
  void gather_full_params(float* out) override {
    finish_reductions();
    size_t largest = 0;
    for (const UnitShard& u : map_.units()) largest = std::max(largest, u.padded);
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
    ZT_CUDA_CHECK(cudaMemcpyAsync(partition, state_buffer(name), part_n_ * sizeof(float), cudaMemcpyDeviceToHost,
                                  stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void import_full(const std::string& name, const float* flat) override {
    std::vector<float> part(part_n_);
    map_.flat_to_partition(flat, part.data(), rank_);
    upload(state_buffer(name), part.data(), part_n_);
  }

  void finish_import() override {
    planner_->drop_all();
    publish_master();
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
    if (!w) return;
    if (w->wait_on_stream(stream_))
      unchecked_gathers_.push_back(std::move(w));
    else
      w->wait();
    w.reset();
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
    planner_->end_step();
    check_gathers();  // the persistent units' gathers, finished by end_step
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
};

}  // namespace

std::unique_ptr<ZeroEngine> make_gpu_stage3_engine(const Config& cfg, const GPT2& layout,
                                                   const InitialWeights& init,
                                                   std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                   ProcessGroup* device_pg) {
  return make_for_precision<GpuStage3Engine>(cfg, layout, init, std::move(model), host_pg, device_pg);
}

}  // namespace zt
