#pragma once
// The per-step scalars of torch.optim.Adam/AdamW, shared by the CPU update (engine/optim) and the GPU kernel
// (kernels/cuda/grad_update.h), so both compute them the same way (adam_step_scalars in optimizer.h).

namespace zt {

struct AdamStepScalars {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float step_size = 0.0f;              // lr / (1 - beta1^step)
  float bias_correction2_sqrt = 1.0f;  // sqrt(1 - beta2^step)
  float l2_decay = 0.0f;               // Adam (L2 mode): weight_decay, added to the gradient as l2_decay * p
  float decoupled_factor = 1.0f;       // AdamW: p scaled by (1 - lr * weight_decay) first
};

}  // namespace zt
