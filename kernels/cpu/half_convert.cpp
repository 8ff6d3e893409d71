#include "kernels/cpu/half_convert.h"

namespace zt {

void float_to_bf16_array(const float* in, uint16_t* out, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = float_to_bf16(in[i]);
}

void bf16_to_float_array(const uint16_t* in, float* out, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = bf16_to_float(in[i]);
}

void float_to_fp16_array(const float* in, uint16_t* out, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = float_to_fp16(in[i]);
}

void fp16_to_float_array(const uint16_t* in, float* out, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = fp16_to_float(in[i]);
}

}  // namespace zt
