#pragma once
// float <-> bf16 and float <-> IEEE fp16 with round-to-nearest-even; NaN stays NaN (quieted, payload kept where it
// fits), infinities and denormals are exact. The 16-bit values travel as raw uint16_t bit patterns.
#include <cstddef>
#include <cstdint>

namespace zt {

uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float fp16_to_float(uint16_t h);

// Array versions (OpenMP over the elements).
void float_to_bf16_array(const float* in, uint16_t* out, size_t n);
void bf16_to_float_array(const uint16_t* in, float* out, size_t n);
void float_to_fp16_array(const float* in, uint16_t* out, size_t n);
void fp16_to_float_array(const uint16_t* in, float* out, size_t n);

}  // namespace zt
