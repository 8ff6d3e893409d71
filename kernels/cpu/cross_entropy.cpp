#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <cstddef>

namespace zt::cpu {

template <typename Scalar>
Scalar cross_entropy_forward(Scalar* losses, Scalar* lse, const Scalar* logits, const int32_t* targets, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const Scalar* z = logits + (size_t)n * V;
    Scalar maxv = z[0];
    for (int v = 1; v < V; v++) maxv = z[v] > maxv ? z[v] : maxv;
    Scalar sum = 0;
    for (int v = 0; v < V; v++) sum += std::exp(z[v] - maxv);
    const Scalar l = maxv + std::log(sum);
    lse[n] = l;
    losses[n] = l - z[targets[n]];
  }
  double total = 0;
  for (int n = 0; n < N; n++) total += losses[n];
  return Scalar(total / N);
}

template <typename Scalar>
void cross_entropy_backward(Scalar* dlogits, const Scalar* logits, const Scalar* lse, const int32_t* targets,
                            Scalar dloss, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const Scalar* z = logits + (size_t)n * V;
    Scalar* dz = dlogits + (size_t)n * V;
    const Scalar l = lse[n];
    for (int v = 0; v < V; v++) dz[v] = std::exp(z[v] - l) * dloss;
    dz[targets[n]] -= dloss;
  }
}

template float cross_entropy_forward<float>(float*, float*, const float*, const int32_t*, int, int);
template double cross_entropy_forward<double>(double*, double*, const double*, const int32_t*, int, int);
template void cross_entropy_backward<float>(float*, const float*, const float*, const int32_t*, float, int, int);
template void cross_entropy_backward<double>(double*, const double*, const double*, const int32_t*, double, int, int);

}  // namespace zt::cpu
