// Stage 0: plain data parallelism. Every rank holds everything; gradients are all-reduced (averaged) in buckets of
// reduce_bucket_size elements at the accumulation boundary, and every rank applies the identical update.
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
        optimizer_(make_optimizer(cfg.optimizer, model.num_params())),
        ranges_(full_decay_ranges(model)) {}

  void begin_step() override { model_.zero_grad(); }

  void end_micro_batch(bool last) override {
    if (!last || pg_.size() == 1) return;
    const size_t n = model_.num_params();
    const size_t bucket = std::max<int64_t>(cfg_.zero.reduce_bucket_size, 1);
    float* g = model_.grad_data();
    for (size_t at = 0; at < n; at += bucket)
      pg_.allreduce(g + at, std::min(bucket, n - at), DType::F32, ReduceOp::Avg);
    comm_bytes_ = 0;  // in place: no staging
  }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    const size_t n = model_.num_params();
    float* g = model_.grad_data();
    r.grad_norm = std::sqrt(sum_squares(g, n));
    clip_to_global_norm(g, n, r.grad_norm, cfg_.gradient_clipping);
    optimizer_->step(model_.param_data(), g, ranges_, lr, step);
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    m.param_bytes = model_.num_params() * sizeof(float);
    m.grad_bytes = model_.num_params() * sizeof(float);
    m.optimizer_bytes = optimizer_->state().size() * optimizer_->size() * sizeof(float);
    m.comm_bytes = comm_bytes_;
    return m;
  }

  void gather_full_params(float* out) override {
    std::memcpy(out, model_.param_data(), model_.num_params() * sizeof(float));
  }

  int stage() const override { return 0; }

 private:
  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<DecayRange> ranges_;
  size_t comm_bytes_ = 0;
};

std::unique_ptr<ZeroEngine> make_data_parallel_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  return std::make_unique<DataParallelEngine>(cfg, model, pg);
}

}  // namespace zt
