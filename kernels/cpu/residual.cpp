#include "kernels/cpu/residual.h"

#include <cstddef>
namespace zt::cpu {

template <typename Scalar>
void residual_forward(Scalar* out, const Scalar* inp1, const Scalar* inp2, int N) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
}

template <typename Scalar>
void residual_backward(Scalar* dinp1, Scalar* dinp2, const Scalar* dout, int N) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
  }
}

template void residual_forward<float>(float*, const float*, const float*, int);
template void residual_forward<double>(double*, const double*, const double*, int);
template void residual_backward<float>(float*, float*, const float*, int);
template void residual_backward<double>(double*, double*, const double*, int);

}  // namespace zt::cpu
