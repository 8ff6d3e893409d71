#include "kernels/cpu/encoder.h"

#include <cstddef>

#include "kernels/cpu/parallel.h"

namespace zt::cpu {

template <typename Scalar>
void encoder_forward(Scalar* out, const int32_t* inp, const Scalar* wte, const Scalar* wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * T; bt++) {
    const int t = bt % T;
    Scalar* out_bt = out + (size_t)bt * C;
    const Scalar* wte_ix = wte + (size_t)inp[bt] * C;
    const Scalar* wpe_t = wpe + (size_t)t * C;
    for (int c = 0; c < C; c++) out_bt[c] = wte_ix[c] + wpe_t[c];
  }
}

template <typename Scalar>
void encoder_backward(Scalar* dwte, Scalar* dwpe, const Scalar* dout, const int32_t* inp, int B, int T, int C) {
  parallel_column_chunks(C, [&](int c0, int c1) {
    for (int bt = 0; bt < B * T; bt++) {
      const int t = bt % T;
      const Scalar* dout_bt = dout + (size_t)bt * C;
      Scalar* dwte_ix = dwte + (size_t)inp[bt] * C;
      Scalar* dwpe_t = dwpe + (size_t)t * C;
      for (int c = c0; c < c1; c++) {
        dwte_ix[c] += dout_bt[c];
        dwpe_t[c] += dout_bt[c];
      }
    }
  });
}

template void encoder_forward<float>(float*, const int32_t*, const float*, const float*, int, int, int);
template void encoder_forward<double>(double*, const int32_t*, const double*, const double*, int, int, int);
template void encoder_backward<float>(float*, float*, const float*, const int32_t*, int, int, int);
template void encoder_backward<double>(double*, double*, const double*, const int32_t*, int, int, int);

}  // namespace zt::cpu
