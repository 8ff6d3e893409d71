// Adam over one span, per ISA. Every variant does the same float operations in the same order as the reference
// (engine/optim adam_update): g = grad + l2*p; p' = p*factor; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
// p = p' - step_size * m / (sqrt(v)/sqrt(bc2) + eps). mul, add, div and sqrt are correctly rounded in SSE/AVX, so
// without FMA (deliberately unused: it would round differently) the lanes equal the scalar code bit for bit.
// The wide variants are compiled for their ISA by target attributes only, so the build needs no -march flag.
// C++ lets GCC contract a*b+c into an FMA wherever the target has one (-ffp-contract=fast is its default outside
// ISO C), and the AVX-512 target always has it: that rounds once instead of twice and breaks bit equality with the
// reference, so contraction is off for this file.
#pragma GCC optimize("fp-contract=off")
// GCC 12 reports the AVX-512 headers' own _mm512_undefined_ps as maybe-uninitialized when inlined (a header bug).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>

#include "offload/cpu_adam_kernels.h"

namespace zt::offload::detail {

void adam_span_scalar(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s) {
  for (size_t i = 0; i < n; i++) {
    float grad = g[i] + s.l2_decay * p[i];
    float param = p[i] * s.decoupled_factor;
    float mi = m[i] * s.beta1 + s.one_minus_beta1 * grad;
    float vi = v[i] * s.beta2 + s.one_minus_beta2 * (grad * grad);
    m[i] = mi;
    v[i] = vi;
    float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    p[i] = param - s.step_size * (mi / denom);
  }
}

__attribute__((target("avx2"))) void adam_span_avx2(float* p, const float* g, float* m, float* v, size_t n,
                                                        const AdamScalars& s) {
  const __m256 beta1 = _mm256_set1_ps(s.beta1), beta2 = _mm256_set1_ps(s.beta2);
  const __m256 omb1 = _mm256_set1_ps(s.one_minus_beta1), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 eps = _mm256_set1_ps(s.eps), step_size = _mm256_set1_ps(s.step_size);
  const __m256 bc2 = _mm256_set1_ps(s.bias_correction2_sqrt), l2 = _mm256_set1_ps(s.l2_decay);
  const __m256 factor = _mm256_set1_ps(s.decoupled_factor);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 pi = _mm256_loadu_ps(p + i);
    __m256 grad = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(l2, pi));
    __m256 param = _mm256_mul_ps(pi, factor);
    __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), beta1), _mm256_mul_ps(omb1, grad));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), beta2),
                              _mm256_mul_ps(omb2, _mm256_mul_ps(grad, grad)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    _mm256_storeu_ps(p + i, _mm256_sub_ps(param, _mm256_mul_ps(step_size, _mm256_div_ps(mi, denom))));
  }
  adam_span_scalar(p + i, g + i, m + i, v + i, n - i, s);
}

__attribute__((target("avx512f"))) void adam_span_avx512(float* p, const float* g, float* m, float* v, size_t n,
                                                         const AdamScalars& s) {
  const __m512 beta1 = _mm512_set1_ps(s.beta1), beta2 = _mm512_set1_ps(s.beta2);
  const __m512 omb1 = _mm512_set1_ps(s.one_minus_beta1), omb2 = _mm512_set1_ps(s.one_minus_beta2);
  const __m512 eps = _mm512_set1_ps(s.eps), step_size = _mm512_set1_ps(s.step_size);
  const __m512 bc2 = _mm512_set1_ps(s.bias_correction2_sqrt), l2 = _mm512_set1_ps(s.l2_decay);
  const __m512 factor = _mm512_set1_ps(s.decoupled_factor);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 pi = _mm512_loadu_ps(p + i);
    __m512 grad = _mm512_add_ps(_mm512_loadu_ps(g + i), _mm512_mul_ps(l2, pi));
    __m512 param = _mm512_mul_ps(pi, factor);
    __m512 mi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), beta1), _mm512_mul_ps(omb1, grad));
    __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), beta2),
                              _mm512_mul_ps(omb2, _mm512_mul_ps(grad, grad)));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    _mm512_storeu_ps(p + i, _mm512_sub_ps(param, _mm512_mul_ps(step_size, _mm512_div_ps(mi, denom))));
  }
  adam_span_scalar(p + i, g + i, m + i, v + i, n - i, s);
}

}  // namespace zt::offload::detail
