#pragma once
// Optimizers over a flat fp32 slice, so that a ZeRO partition is updated exactly like the whole model.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/optim/adam_step.h"

namespace zt {

// A range of the slice [begin, end) and whether weight decay applies to it.
struct DecayRange {
  size_t begin = 0, end = 0;
  bool decay = false;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of params[0..n) with grads[0..n) at learning rate lr; step counts from 1 (bias correction).
  virtual void step(float* params, const float* grads, const std::vector<DecayRange>& ranges, double lr,
                    int64_t step) = 0;
  // Named state buffers of n floats each (Adam: "exp_avg", "exp_avg_sq"; SGD: "momentum_buffer"), for checkpoints.
  virtual std::vector<std::pair<std::string, float*>> state() = 0;
  virtual size_t size() const = 0;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& cfg, size_t n);

// Adam's scalars for one update at `step` (from 1) of a segment with or without weight decay; decoupled = AdamW.
AdamStepScalars adam_step_scalars(const OptimizerConfig& cfg, bool decoupled, double lr, int64_t step, bool decay);

// DeepSpeed's schedules: lr at a 0-based step (the lr used by the update that makes step+1).
double scheduled_lr(const SchedulerConfig& s, double base_lr, int64_t step);

// Sum of squares in double; the global norm over partitions is sqrt(allreduce(sum_squares)).
double sum_squares(const float* x, size_t n);
void scale_inplace(float* x, size_t n, float factor);

}  // namespace zt
