#pragma once
// Internal to offload/: the per-ISA Adam kernels over one contiguous span.
#include <cstddef>

namespace zt::offload::detail {

// The float constants of one step, computed once in double exactly as the reference optimizer does.
struct AdamScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float step_size;              // lr / (1 - beta1^step)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float l2_decay;               // Adam with L2: wd (else 0)
  float decoupled_factor;       // AdamW: 1 - lr*wd (else 1)
};

void adam_span_scalar(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s);
void adam_span_avx2(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s);
void adam_span_avx512(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s);

}  // namespace zt::offload::detail
