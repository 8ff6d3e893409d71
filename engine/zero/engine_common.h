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

// Scales grads so that their global norm is at most max_norm (torch's clip_grad_norm_ rule:
// coef = max_norm / (norm + 1e-6), applied when below 1). max_norm <= 0 disables clipping.
// The factor clipping scales by (1 when no clipping applies); the GPU engine uses it with its own scaling kernel.
float clip_factor(double norm, double max_norm);
void clip_to_global_norm(float* grads, size_t n, double norm, double max_norm);

// Weight-decay ranges over the model's whole flat buffer.
std::vector<DecayRange> full_decay_ranges(const GPT2& model);

// sqrt of the sum over ranks of each rank's local sum of squares.
double global_norm_from_partitions(ProcessGroup& pg, double local_sum_squares);

// "master" followed by the optimizer's state buffer names.
std::vector<std::string> checkpoint_state_names(Optimizer& opt);
// The optimizer's state buffer called name; throws RuntimeError naming it when there is none.
float* optimizer_state(Optimizer& opt, const std::string& name);

// The part of every stage's step between reduced gradients and the optimizer: agree on overflow (fp16: skip the
// step and lower the scale), unscale, compute the global norm (over partitions when partitioned) and clip.
// Returns false when the step is skipped; fills r.
bool finish_gradients(ProcessGroup& pg, LossScaler& scaler, float* grads, size_t n, double clip, bool partitioned,
                      StepResult& r);

}  // namespace zt
