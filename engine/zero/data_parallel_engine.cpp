// Stage 0: plain data parallelism. Every rank holds everything; gradients are all-reduced (averaged) in buckets of
// reduce_bucket_size elements at the accumulation boundary, and every rank applies the identical update.
// With bf16/fp16 the model holds working-precision parameters and an fp32 master copy is updated instead.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/zero/engine_common.h"
#include "engine/zero/zero_engine.h"

namespace zt {

class DataParallelEngine : public ZeroEngine {
 public:
  DataParallelEngine(const Config& cfg, GPT2& model, ProcessGroup& pg)
      : cfg_(cfg),
        model_(model),
        pg_(pg),
        map_(model, pg.size()),
        precision_(working_precision(cfg)),
        scaler_(cfg.fp16),
        optimizer_(make_optimizer(cfg.optimizer, model.num_params())),
        ranges_(full_decay_ranges(model)) {
    if (is_mixed(precision_)) {
      master_.assign(model.param_data(), model.param_data() + model.num_params());
      round_to_working(model.param_data(), model.num_params(), precision_);
    }
  }

  void begin_step() override { model_.zero_grad(); }

  void end_micro_batch(bool last) override {
    if (!last) return;
    const size_t n = model_.num_params();
    float* g = model_.grad_data();
    round_to_working(g, n, precision_);
    if (pg_.size() == 1) return;
    const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
    for (size_t at = 0; at < n; at += bucket)
      pg_.allreduce(g + at, std::min(bucket, n - at), DType::F32, ReduceOp::Avg);
    round_to_working(g, n, precision_);
  }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    const size_t n = model_.num_params();
    float* g = model_.grad_data();
    if (!finish_gradients(pg_, scaler_, g, n, cfg_.gradient_clipping, false, r)) return r;
    if (is_mixed(precision_)) {
      optimizer_->step(master_.data(), g, ranges_, lr, step);
      std::memcpy(model_.param_data(), master_.data(), n * sizeof(float));
      round_to_working(model_.param_data(), n, precision_);
    } else {
      optimizer_->step(model_.param_data(), g, ranges_, lr, step);
    }
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    // Honest bytes: on CPU the working-precision parameters and gradients are fp32 buffers holding 16-bit values,
    // so with bf16/fp16 these terms are twice ZeRO's 2-byte ones (stage 3 keeps its partition truly in 16 bits).
    const size_t wbytes = sizeof(float);
    m.param_bytes = model_.num_params() * wbytes;
    m.grad_bytes = model_.num_params() * wbytes;
    m.optimizer_bytes = (optimizer_->state().size() * optimizer_->size() + master_.size()) * sizeof(float);
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  void gather_full_params(float* out) override {
    const float* src = is_mixed(precision_) ? master_.data() : model_.param_data();
    std::memcpy(out, src, model_.num_params() * sizeof(float));
  }

  int stage() const override { return 0; }

  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override { return checkpoint_state_names(*optimizer_); }

  void export_partition(const std::string& name, float* partition) override {
    const float* full = name == "master" ? (is_mixed(precision_) ? master_.data() : model_.param_data())
                                         : optimizer_state(*optimizer_, name);
    map_.flat_to_partition(full, partition, pg_.rank());
  }

  void import_full(const std::string& name, const float* flat) override {
    float* dst = name == "master" ? (is_mixed(precision_) ? master_.data() : model_.param_data())
                                  : optimizer_state(*optimizer_, name);
    std::memcpy(dst, flat, model_.num_params() * sizeof(float));
  }

  void finish_import() override {
    if (!is_mixed(precision_)) return;
    std::memcpy(model_.param_data(), master_.data(), model_.num_params() * sizeof(float));
    round_to_working(model_.param_data(), model_.num_params(), precision_);
  }

  ScalerState scaler_state() const override { return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()}; }
  void set_scaler_state(const ScalerState& s) override { scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps); }

 private:
  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  PartitionMap map_;  // only for checkpoints: every stage saves the same partition layout
  WorkingPrecision precision_;
  LossScaler scaler_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<DecayRange> ranges_;
  std::vector<float> master_;  // fp32 master weights (mixed precision only)
};

std::unique_ptr<ZeroEngine> make_data_parallel_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  return std::make_unique<DataParallelEngine>(cfg, model, pg);
}

}  // namespace zt
