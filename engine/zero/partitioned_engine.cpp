// Stages 1 and 2: each rank keeps the fp32 master weights and optimizer state of its partition only, updates that
// partition and all-gathers the result. Stage 1 reduces gradients once at the accumulation boundary (reduce-scatter
// when `reduce_scatter`, else all-reduce and keep the owned part). Stage 2 reduce-scatters each unit's gradients
// as soon as backward has finished them, so that full gradients exist only for the units backward is working on;
// with `overlap_comm` those reduce-scatters run while backward goes on.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/zero/engine_common.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/partition_map.h"
#include "engine/zero/unit_buffer_pool.h"
#include "engine/zero/zero_engine.h"

namespace zt {

class PartitionedEngine : public ZeroEngine, private UnitHooks {
 public:
  PartitionedEngine(const Config& cfg, GPT2& model, ProcessGroup& pg, int stage)
      : cfg_(cfg),
        model_(model),
        pg_(pg),
        stage_(stage),
        precision_(working_precision(cfg)),
        scaler_(cfg.fp16),
        map_(model, pg.size()),
        master_(map_.partition_numel()),
        part_grads_(map_.partition_numel(), 0.0f),
        optimizer_(make_optimizer(cfg.optimizer, map_.partition_numel())),
        ranges_(map_.decay_ranges(model.params(), pg.rank())),
        unit_grads_(static_cast<size_t>(model.num_units()), nullptr) {
    map_.flat_to_partition(model.param_data(), master_.data(), pg.rank());
    round_to_working(model.param_data(), model.num_params(), precision_);
    if (stage_ == 2) model_.set_hooks(this);
  }

  ~PartitionedEngine() override {
    if (stage_ == 2) model_.set_hooks(nullptr);
  }

  void begin_step() override {
    std::fill(part_grads_.begin(), part_grads_.end(), 0.0f);
    if (stage_ == 1) model_.zero_grad();
  }

  void end_micro_batch(bool last) override {
    if (stage_ == 2) {
      // Every unit was handed to the bucketer during backward; collect this micro-batch's shards.
      bucketer().finish(part_grads_.data());
      return;
    }
    if (!last) return;
    float* g = model_.grad_data();
    round_to_working(g, model_.num_params(), precision_);
    if (cfg_.zero.reduce_scatter || pg_.size() == 1) {
      for (int u = 0; u < model_.num_units(); ++u) bucketer().add_unit(u, g + map_.units()[u].flat_offset);
      bucketer().finish(part_grads_.data());
    } else {
      float* gm = model_.grad_data();
      const size_t n = model_.num_params();
      const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
      for (size_t at = 0; at < n; at += bucket)
        pg_.allreduce(gm + at, std::min(bucket, n - at), DType::F32, ReduceOp::Avg);
      map_.flat_to_partition(gm, part_grads_.data(), pg_.rank());
    }
    round_to_working(part_grads_.data(), part_grads_.size(), precision_);
  }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    const size_t n = part_grads_.size();
    if (!finish_gradients(pg_, scaler_, part_grads_.data(), n, cfg_.gradient_clipping, true, r)) return r;
    optimizer_->step(master_.data(), part_grads_.data(), ranges_, lr, step);
    allgather_partition(map_, pg_, master_.data(), model_.param_data(),
                        static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)));
    round_to_working(model_.param_data(), model_.num_params(), precision_);
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    // Honest bytes: on CPU the working-precision parameters and gradients are fp32 buffers holding 16-bit values,
    // so with bf16/fp16 these terms are twice ZeRO's 2-byte ones (stage 3 keeps its partition truly in 16 bits).
    const size_t wbytes = sizeof(float);
    m.param_bytes = model_.num_params() * wbytes;
    // Stage 1 keeps full gradients for accumulation; stage 2 only the owned partition (the units in flight are
    // transient buffers).
    m.grad_bytes = stage_ == 1 ? model_.num_params() * wbytes : part_grads_.size() * wbytes;
    // The fp32 master partition is kept in every precision, as DeepSpeed's partitioned optimizer does.
    m.optimizer_bytes = (optimizer_->state().size() * optimizer_->size() + master_.size()) * sizeof(float);
    m.comm_bytes = (bucketer_ ? bucketer_->comm_bytes() : 0) + pool_.peak_bytes_in_use();
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  void gather_full_params(float* out) override {
    allgather_partition(map_, pg_, master_.data(), out,
                        static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)));
  }

  int stage() const override { return stage_; }

  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override { return checkpoint_state_names(*optimizer_); }

  void export_partition(const std::string& name, float* partition) override {
    const float* src = name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
    std::memcpy(partition, src, map_.partition_numel() * sizeof(float));
  }

  void import_full(const std::string& name, const float* flat) override {
    float* dst = name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
    map_.flat_to_partition(flat, dst, pg_.rank());
  }

  void finish_import() override {
    allgather_partition(map_, pg_, master_.data(), model_.param_data(),
                        static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)));
    round_to_working(model_.param_data(), model_.num_params(), precision_);
  }

  ScalerState scaler_state() const override {
    return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
  }
  void set_scaler_state(const ScalerState& s) override { scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps); }

 private:
  GradientBucketer& bucketer() {
    if (!bucketer_)
      bucketer_ = std::make_unique<GradientBucketer>(
          map_, pg_, static_cast<size_t>(std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1)),
          stage_ == 2 && cfg_.zero.overlap_comm);
    return *bucketer_;
  }

  // Stage 2's hooks: a unit's full gradient lives in a pooled buffer from its first backward use until its
  // after_backward (the model calls that once per unit, when the gradient is complete: the tied embedding's
  // before_backward comes twice, for the LM head and the embedding), then is reduce-scattered and returned.
  void before_forward(int) override {}
  void after_forward(int) override {}
  void before_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    if (unit_grads_[u]) return;
    const UnitShard& s = map_.units()[u];
    unit_grads_[u] = pool_.acquire(s.numel, true);
    model_.set_unit_buffers(unit, model_.param_data() + s.flat_offset, unit_grads_[u]);
  }
  void after_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    round_to_working(unit_grads_[u], map_.units()[u].numel, precision_);
    bucketer().add_unit(unit, unit_grads_[u]);
    pool_.release(unit_grads_[u]);
    unit_grads_[u] = nullptr;
  }

  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  int stage_;
  WorkingPrecision precision_;
  LossScaler scaler_;
  PartitionMap map_;
  std::vector<float> master_;      // fp32 master weights of this rank's partition
  std::vector<float> part_grads_;  // reduced gradients of this rank's partition
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<DecayRange> ranges_;
  std::unique_ptr<GradientBucketer> bucketer_;
  UnitBufferPool pool_;
  std::vector<float*> unit_grads_;
};

std::unique_ptr<ZeroEngine> make_partitioned_engine(const Config& cfg, GPT2& model, ProcessGroup& pg, int stage) {
  return std::make_unique<PartitionedEngine>(cfg, model, pg, stage);
}

}  // namespace zt
