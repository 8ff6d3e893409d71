#include "kernels/cpu/layernorm.h"

#include <cmath>
#include <cstddef>

#include "kernels/cpu/parallel.h"

namespace zt::cpu {

template <typename Scalar>
void layernorm_forward(Scalar* out, Scalar* mean, Scalar* rstd, const Scalar* inp, const Scalar* weight,
                       const Scalar* bias, int N, int C) {
  const Scalar eps = Scalar(1e-5);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const Scalar* x = inp + (size_t)n * C;
    Scalar m = 0;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    // Two-pass variance: the one-pass E[x^2]-E[x]^2 loses precision on residual streams with a large mean.
    Scalar v = 0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) {
      const Scalar d = x[c] - m;
      v += d * d;
    }
    v /= C;
    const Scalar s = Scalar(1) / std::sqrt(v + eps);
    Scalar* y = out + (size_t)n * C;
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <typename Scalar>
void layernorm_backward(Scalar* dinp, Scalar* dweight, Scalar* dbias, const Scalar* dout, const Scalar* inp,
                        const Scalar* weight, const Scalar* mean, const Scalar* rstd, int N, int C) {
  // dinp: with xhat = (x - mean) * rstd and g = dout * weight,
  //   dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)).
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const Scalar* x = inp + (size_t)n * C;
    const Scalar* dy = dout + (size_t)n * C;
    Scalar* dx = dinp + (size_t)n * C;
    const Scalar m = mean[n], s = rstd[n];
    Scalar g_mean = 0, gx_mean = 0;
#pragma omp simd reduction(+ : g_mean, gx_mean)
    for (int c = 0; c < C; c++) {
      const Scalar g = dy[c] * weight[c];
      g_mean += g;
      gx_mean += g * (x[c] - m) * s;
    }
    g_mean /= C;
    gx_mean /= C;
    for (int c = 0; c < C; c++) {
      const Scalar xhat = (x[c] - m) * s;
      dx[c] += s * (dy[c] * weight[c] - g_mean - xhat * gx_mean);
    }
  }
  // Parameter gradients are sums over rows: each thread owns a column range (deterministic, race-free).
  parallel_column_chunks(C, [&](int c0, int c1) {
    for (int n = 0; n < N; n++) {
      const Scalar* x = inp + (size_t)n * C;
      const Scalar* dy = dout + (size_t)n * C;
      const Scalar m = mean[n], s = rstd[n];
      for (int c = c0; c < c1; c++) {
        dweight[c] += dy[c] * (x[c] - m) * s;
        dbias[c] += dy[c];
      }
    }
  });
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int, int);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                        int);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const float*, int, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int, int);

}  // namespace zt::cpu
