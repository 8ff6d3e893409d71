// Stages 1 and 2: each rank keeps the fp32 master weights and optimizer state of its partition only, updates that
// partition and all-gathers the result. With offload_optimizer nvme the master lives in a swap file: each updated
// sub-group is copied straight into this rank's elements of the model's parameters, and the all-gather sends those.
// Stage 1 reduces gradients once at the accumulation boundary (reduce-scatter when `reduce_scatter`, else
// all-reduce and keep the owned part). Stage 2 reduce-scatters each unit's gradients
// as soon as backward has finished them, so that full gradients exist only for the units backward is working on;
// with `overlap_comm` those reduce-scatters run while backward goes on.
#include <algorithm>
#include <vector>

#include "engine/zero/engine_common.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/owned_partition.h"
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
        owned_(cfg, model, pg),
        unit_grads_(static_cast<size_t>(model.num_units()), nullptr) {
    round_to_working(model.param_data(), model.num_params(), precision_);
    if (stage_ == 2) model_.set_hooks(this);
  }

  ~PartitionedEngine() override {
    if (stage_ == 2) model_.set_hooks(nullptr);
  }

  void begin_step() override {
    owned_.zero_grads();
    if (stage_ == 1) model_.zero_grad();
  }

  void end_micro_batch(bool last) override {
    if (stage_ == 2) {
      // Every unit was handed to the bucketer during backward; collect this micro-batch's shards.
      bucketer().finish(owned_.grads());
      return;
    }
    if (!last) return;
    float* g = model_.grad_data();
    const size_t n = model_.num_params();
    round_to_working(g, n, precision_);
    if (cfg_.zero.reduce_scatter || pg_.size() == 1) {
      for (int u = 0; u < model_.num_units(); ++u) bucketer().add_unit(u, g + owned_.map().units()[u].flat_offset);
      bucketer().finish(owned_.grads());
    } else {
      const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
      for (size_t at = 0; at < n; at += bucket)
        pg_.allreduce(g + at, std::min(bucket, n - at), DType::F32, ReduceOp::Avg);
      owned_.map().flat_to_partition(g, owned_.grads(), pg_.rank());
    }
    round_to_working(owned_.grads(), owned_.size(), precision_);
  }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    if (owned_.update(lr, step, r, into_model())) publish_master();
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    // Honest bytes: on CPU the working-precision parameters and gradients are fp32 buffers holding 16-bit values,
    // so with bf16/fp16 these terms are twice ZeRO's 2-byte ones (stage 3 keeps its partition truly in 16 bits).
    m.param_bytes = model_.num_params() * sizeof(float);
    // Stage 1 keeps full gradients for accumulation; stage 2 only the owned partition (the units in flight are
    // transient buffers).
    m.grad_bytes = (stage_ == 1 ? model_.num_params() : owned_.size()) * sizeof(float);
    // The fp32 master partition is kept in every precision, as DeepSpeed's partitioned optimizer does (with NVMe
    // offload in a swap file, as Adam's state: then this counts only their staging buffers).
    m.optimizer_bytes = owned_.optimizer_bytes();
    m.comm_bytes = (bucketer_ ? bucketer_->comm_bytes() : 0) + pool_.peak_bytes_in_use() +
                   gather_scratch_.capacity() * sizeof(float);
    return m;
  }

  float loss_scale() const override { return owned_.loss_scale(); }
  void gather_full_params(float* out) override {
    std::vector<float> scratch;  // a save, not a step: with NVMe offload the master is read from its file for it
    allgather_partition(owned_.map(), pg_, owned_.master_for_save(scratch), out, bucket_elems(), gather_scratch_);
  }
  int stage() const override { return stage_; }
  const PartitionMap& partition_map() const override { return owned_.map(); }
  std::vector<std::string> state_names() const override { return owned_.state_names(); }
  void export_partition(const std::string& name, float* part) override { owned_.export_partition(name, part); }
  void import_full(const std::string& name, const float* flat) override { owned_.import_full(name, flat); }
  void finish_import() override {
    owned_.stream_master(into_model());
    publish_master();
  }
  ScalerState scaler_state() const override { return owned_.scaler_state(); }
  void set_scaler_state(const ScalerState& s) override { owned_.set_scaler_state(s); }

 private:
  size_t bucket_elems() const { return static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)); }

  // NVMe offload: the master's sub-groups, as the optimizer or the swap file hands them over, into this rank's
  // elements of the model's parameters. With the master in memory the all-gather reads it directly.
  MasterSink into_model() {
    return [this](size_t begin, size_t len, const float* master) {
      if (!owned_.master_in_memory())
        owned_.map().partition_range_to_flat(master, begin, len, model_.param_data(), pg_.rank());
    };
  }

  // Every rank's updated master partition into the model's working parameters.
  void publish_master() {
    if (const float* master = owned_.master_in_memory())
      allgather_partition(owned_.map(), pg_, master, model_.param_data(), bucket_elems(), gather_scratch_);
    else
      allgather_own_shards(owned_.map(), pg_, model_.param_data(), bucket_elems(), gather_scratch_);
    round_to_working(model_.param_data(), model_.num_params(), precision_);
  }

  GradientBucketer& bucketer() {
    if (!bucketer_)
      bucketer_ = std::make_unique<GradientBucketer>(
          owned_.map(), pg_, static_cast<size_t>(std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1)),
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
    const UnitShard& s = owned_.map().units()[u];
    unit_grads_[u] = pool_.acquire(s.numel, true);
    model_.set_unit_buffers(unit, model_.param_data() + s.flat_offset, unit_grads_[u]);
  }
  void after_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    round_to_working(unit_grads_[u], owned_.map().units()[u].numel, precision_);
    bucketer().add_unit(unit, unit_grads_[u]);
    pool_.release(unit_grads_[u]);
    unit_grads_[u] = nullptr;
  }

  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  int stage_;
  WorkingPrecision precision_;
  OwnedPartition owned_;
  std::unique_ptr<GradientBucketer> bucketer_;
  UnitBufferPool pool_;
  std::vector<float*> unit_grads_;
  std::vector<float> gather_scratch_;  // allgather_partition's buffer, kept between steps
};

std::unique_ptr<ZeroEngine> make_partitioned_engine(const Config& cfg, GPT2& model, ProcessGroup& pg, int stage) {
  return std::make_unique<PartitionedEngine>(cfg, model, pg, stage);
}

}  // namespace zt
