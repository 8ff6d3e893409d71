#include "kernels/cpu/gelu.h"

#include <cmath>
#include <cstddef>

namespace zt::cpu {

namespace {
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
}

template <typename Scalar>
void gelu_forward(Scalar* out, const Scalar* inp, int N) {
  const Scalar s = Scalar(kSqrt2OverPi);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const Scalar x = inp[i];
    out[i] = Scalar(0.5) * x * (Scalar(1) + std::tanh(s * (x + Scalar(0.044715) * x * x * x)));
  }
}

template <typename Scalar>
void gelu_backward(Scalar* dinp, const Scalar* inp, const Scalar* dout, int N) {
  const Scalar s = Scalar(kSqrt2OverPi);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const Scalar x = inp[i];
    const Scalar u = s * (x + Scalar(0.044715) * x * x * x);
    const Scalar th = std::tanh(u);
    const Scalar sech2 = Scalar(1) - th * th;
    const Scalar du_dx = s * (Scalar(1) + Scalar(3 * 0.044715) * x * x);
    const Scalar local = Scalar(0.5) * (Scalar(1) + th) + Scalar(0.5) * x * sech2 * du_dx;
    dinp[i] = local * dout[i];
  }
}

template void gelu_forward<float>(float*, const float*, int);
template void gelu_forward<double>(double*, const double*, int);
template void gelu_backward<float>(float*, const float*, const float*, int);
template void gelu_backward<double>(double*, const double*, const double*, int);

}  // namespace zt::cpu
