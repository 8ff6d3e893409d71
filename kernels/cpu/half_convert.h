#pragma once
// float <-> bf16 and float <-> IEEE fp16 with round-to-nearest-even; NaN stays NaN (quieted, payload kept where it
// fits), infinities and denormals are exact. The 16-bit values travel as raw uint16_t bit patterns.
#include <bit>
#include <cstddef>
#include <cstdint>

namespace zt {

// Inline: the collectives reduce 16-bit buffers element by element through these.
inline uint16_t float_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
    // NaN: truncating could clear every payload bit and give Inf, so keep the top bits and force the quiet bit.
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  }
  // Adding 0x7FFF plus the lowest kept bit rounds the dropped half to nearest, ties to even; a carry into the
  // exponent is the correct rounding up (to the next binade or to Inf).
  uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_fp16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t absx = x & 0x7FFFFFFFu;
  if (absx > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((absx >> 13) & 0x3FFu));  // NaN
  // 65520 is halfway between fp16's largest finite 65504 (odd mantissa) and 65536, so it and above round to Inf.
  if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (absx < 0x38800000u) {
    // Below fp16's smallest normal 2^-14: the result is a subnormal count of 2^-24 units. Half of the smallest
    // subnormal (2^-25) and below round to zero (2^-25 itself is a tie to the even 0).
    if (absx <= 0x33000000u) return sign;
    uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    int exp = static_cast<int>(absx >> 23);  // value = mant * 2^(exp-150); in 2^-24 units: mant >> (126-exp)
    int shift = 126 - exp;
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;  // q reaching 0x400 is the smallest normal, as it should
    return static_cast<uint16_t>(sign | q);
  }
  // Normal: rebias the exponent (127 -> 15, i.e. subtract 112 << 23) and keep the top 10 mantissa bits.
  uint32_t h = (absx - 0x38000000u) >> 13;
  uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return static_cast<uint16_t>(sign | h);
}

inline float fp16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    float mag = static_cast<float>(mant) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(mag));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Array versions (OpenMP over the elements).
void float_to_bf16_array(const float* in, uint16_t* out, size_t n);
void bf16_to_float_array(const uint16_t* in, float* out, size_t n);
void float_to_fp16_array(const float* in, uint16_t* out, size_t n);
void fp16_to_float_array(const uint16_t* in, float* out, size_t n);

}  // namespace zt
