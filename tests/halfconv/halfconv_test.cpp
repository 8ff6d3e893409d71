// Exhaustive checks of the bf16/fp16 conversions: every 16-bit pattern to float and back, and round-to-nearest-even
// at every midpoint between neighbouring half values (and one float ulp either side of it).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

#include "kernels/cpu/half_convert.h"

namespace {

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// An independent decoder of IEEE half: value = (1024 + mant) * 2^(exp - 25), subnormal mant * 2^-24.
float reference_fp16(uint16_t h) {
  int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float sign = (h & 0x8000) ? -1.0f : 1.0f;
  if (exp == 31) return mant ? std::nanf("") : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  return sign * std::ldexp(static_cast<float>(1024 + mant), exp - 25);
}

TEST(HalfConvert, Fp16EveryPatternDecodesAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t x = static_cast<uint16_t>(h);
    float f = zt::fp16_to_float(x);
    float ref = reference_fp16(x);
    bool is_nan = ((x & 0x7C00) == 0x7C00) && (x & 0x3FF);
    if (is_nan) {
      ASSERT_TRUE(std::isnan(f)) << h;
      ASSERT_EQ(std::signbit(f), (x & 0x8000) != 0);
      ASSERT_EQ(zt::float_to_fp16(f), x | 0x0200) << h;  // quieted, payload kept
    } else {
      ASSERT_EQ(bits(f), bits(ref)) << h;  // includes the sign of zero
      ASSERT_EQ(zt::float_to_fp16(f), x) << h;
    }
  }
}

TEST(HalfConvert, Bf16EveryPatternDecodesAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t x = static_cast<uint16_t>(h);
    float f = zt::bf16_to_float(x);
    ASSERT_EQ(bits(f), h << 16);
    bool is_nan = ((x & 0x7F80) == 0x7F80) && (x & 0x7F);
    if (is_nan) {
      ASSERT_TRUE(std::isnan(f));
      ASSERT_EQ(zt::float_to_bf16(f), x | 0x0040) << h;
    } else {
      ASSERT_EQ(zt::float_to_bf16(f), x) << h;
    }
  }
}

// For each pair of neighbouring finite non-negative half values lo < hi (and their negatives): the midpoint goes to
// the one with the even pattern, and one float ulp below/above it goes to lo/hi.
template <typename ToHalf, typename ToFloat>
void check_midpoints(uint16_t max_finite, ToHalf to_half, ToFloat to_float) {
  for (uint16_t lo = 0; lo < max_finite; lo++) {
    uint16_t hi = lo + 1;
    float a = to_float(lo), b = to_float(hi);
    float mid = static_cast<float>((static_cast<double>(a) + b) / 2.0);  // exact: a half needs few mantissa bits
    ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(a) + b) / 2.0);
    uint16_t even = (lo & 1) ? hi : lo;
    ASSERT_EQ(to_half(mid), even) << lo;
    ASSERT_EQ(to_half(std::nextafter(mid, 0.0f)), lo) << lo;
    ASSERT_EQ(to_half(std::nextafter(mid, INFINITY)), hi) << lo;
    ASSERT_EQ(to_half(-mid), even | 0x8000) << lo;
    ASSERT_EQ(to_half(-std::nextafter(mid, INFINITY)), hi | 0x8000) << lo;
  }
}

TEST(HalfConvert, Fp16RoundsToNearestEvenEverywhere) {
  check_midpoints(0x7BFF, zt::float_to_fp16, zt::fp16_to_float);
  // Beyond the largest finite 65504: below 65520 rounds down, 65520 (a tie with odd 65504) and up go to Inf.
  EXPECT_EQ(zt::float_to_fp16(65519.996f), 0x7BFF);
  EXPECT_EQ(zt::float_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(zt::float_to_fp16(1e10f), 0x7C00);
  EXPECT_EQ(zt::float_to_fp16(-INFINITY), 0xFC00);
  // Below the smallest subnormal 2^-24: half of it (2^-25) ties to 0, anything above goes to 2^-24.
  EXPECT_EQ(zt::float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(zt::float_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(zt::float_to_fp16(std::ldexp(1.0f, -140)), 0x0000);  // float denormal
  EXPECT_EQ(zt::float_to_fp16(-0.0f), 0x8000);
}

TEST(HalfConvert, Bf16RoundsToNearestEvenEverywhere) {
  check_midpoints(0x7F7F, zt::float_to_bf16, zt::bf16_to_float);
  EXPECT_EQ(zt::float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to Inf
  EXPECT_EQ(zt::float_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(zt::float_to_bf16(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // NaN whose payload is all dropped
}

TEST(HalfConvert, ArraysMatchScalars) {
  std::vector<float> x(200000);
  for (size_t i = 0; i < x.size(); i++) x[i] = std::bit_cast<float>(static_cast<uint32_t>(i * 2654435761u));
  std::vector<uint16_t> h(x.size()), b(x.size());
  std::vector<float> fh(x.size()), fb(x.size());
  zt::float_to_fp16_array(x.data(), h.data(), x.size());
  zt::float_to_bf16_array(x.data(), b.data(), x.size());
  zt::fp16_to_float_array(h.data(), fh.data(), x.size());
  zt::bf16_to_float_array(b.data(), fb.data(), x.size());
  for (size_t i = 0; i < x.size(); i++) {
    ASSERT_EQ(h[i], zt::float_to_fp16(x[i]));
    ASSERT_EQ(b[i], zt::float_to_bf16(x[i]));
    ASSERT_EQ(bits(fh[i]), bits(zt::fp16_to_float(h[i])));
    ASSERT_EQ(bits(fb[i]), bits(zt::bf16_to_float(b[i])));
  }
}

}  // namespace
