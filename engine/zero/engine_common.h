#pragma once
// Pieces every stage's engine shares.
#include <cstddef>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/model/gpt2.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/mixed_precision.h"
#include "engine/zero/zero_engine.h"

namespace zt {

// The factor that scales gradients of global norm `norm` to at most max_norm (torch's clip_grad_norm_ rule:
// coef = max_norm / (norm + 1e-6), applied when below 1); 1 when no clipping applies. max_norm <= 0 disables it.
float clip_factor(double norm, double max_norm);

// Weight-decay ranges over the model's whole flat buffer.
std::vector<DecayRange> full_decay_ranges(const GPT2& model);

// sqrt of the sum over ranks of each rank's local sum of squares.
double global_norm_from_partitions(ProcessGroup& pg, double local_sum_squares);

// "master" followed by the optimizer's state buffer names.
std::vector<std::string> checkpoint_state_names(Optimizer& opt);
// The optimizer's state buffer called name; throws RuntimeError naming it when there is none.
float* optimizer_state(Optimizer& opt, const std::string& name);

// A rank's reduced gradients (its partition, or the whole model at stage 0) as finish_gradients works on them:
// fp32 values in host memory (the CPU engines) or on a device (engine/zero/cuda).
class ReducedGradients {
 public:
  virtual ~ReducedGradients() = default;
  virtual bool has_nonfinite() = 0;
  virtual void scale(float factor) = 0;
  virtual double sum_squares() = 0;  // in double
};

// The part of every stage's step between reduced gradients and the optimizer: agree on overflow (fp16: skip the
// step and lower the scale), unscale, compute the global norm (over partitions when partitioned) and clip.
// Returns false when the step is skipped; fills r.
bool finish_gradients(ProcessGroup& pg, LossScaler& scaler, ReducedGradients& grads, double clip, bool partitioned,
                      StepResult& r);
// The same over n fp32 gradients in host memory.
bool finish_gradients(ProcessGroup& pg, LossScaler& scaler, float* grads, size_t n, double clip, bool partitioned,
                      StepResult& r);

}  // namespace zt
