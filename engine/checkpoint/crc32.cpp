#include "engine/checkpoint/crc32.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ZT_CRC32_CLMUL 1
#endif

#include "engine/base/error.h"

namespace zt {

namespace {

struct Table {
  uint32_t t[8][256];
  Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    // Slicing-by-8: t[k][i] is the CRC of byte i followed by k zero bytes.
    for (uint32_t i = 0; i < 256; ++i)
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
};

const Table& table() {
  static const Table tab;
  return tab;
}

// c is the raw register (pre- and post-inversion are the caller's).
uint32_t crc32_slice8_raw(uint32_t c, const unsigned char* p, size_t n) {
  const Table& T = table();
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = T.t[7][lo & 0xFF] ^ T.t[6][(lo >> 8) & 0xFF] ^ T.t[5][(lo >> 16) & 0xFF] ^ T.t[4][lo >> 24] ^
        T.t[3][hi & 0xFF] ^ T.t[2][(hi >> 8) & 0xFF] ^ T.t[1][(hi >> 16) & 0xFF] ^ T.t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = T.t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return c;
}

#ifdef ZT_CRC32_CLMUL
// Carry-less multiplication folding (the method of Intel's white paper "Fast CRC Computation for Generic Polynomials
// Using PCLMULQDQ"), for the bit-reflected polynomial 0xEDB88320. Four 128-bit lanes are folded forward 512 bits
// at a time, then into one lane, then 128 -> 64 -> 32 bits, and a Barrett reduction gives the CRC. The constants are
// x^k mod P(x) for the fold distances (reflected, 33 bits): k1 = x^(512+32), k2 = x^(512-32), k3 = x^(128+32),
// k4 = x^(128-32), k5 = x^64; mu = floor(x^64 / P(x)). n must be >= 64 and a multiple of 16; c is the raw register.
#define ZT_CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

ZT_CLMUL_TARGET inline __m128i load(const unsigned char* q) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
}

// a * x^(distance) folded onto the next block: lo(a) * lo(k) ^ hi(a) * hi(k).
ZT_CLMUL_TARGET inline __m128i fold(__m128i a, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11));
}

ZT_CLMUL_TARGET uint32_t crc32_clmul_raw(uint32_t c, const unsigned char* p, size_t n) {
  const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596ll, 0x0154442bd4ll);
  const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
  const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124ll);
  const __m128i poly_mu = _mm_set_epi64x(0x01f7011641ll, 0x01db710641ll);  // lo: P(x), hi: mu
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);

  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(c)));
  __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  p += 64;
  n -= 64;
  while (n >= 64) {
    x1 = _mm_xor_si128(fold(x1, k1k2), load(p));
    x2 = _mm_xor_si128(fold(x2, k1k2), load(p + 16));
    x3 = _mm_xor_si128(fold(x3, k1k2), load(p + 32));
    x4 = _mm_xor_si128(fold(x4, k1k2), load(p + 48));
    p += 64;
    n -= 64;
  }
  x1 = _mm_xor_si128(fold(x1, k3k4), x2);
  x1 = _mm_xor_si128(fold(x1, k3k4), x3);
  x1 = _mm_xor_si128(fold(x1, k3k4), x4);
  while (n >= 16) {
    x1 = _mm_xor_si128(fold(x1, k3k4), load(p));
    p += 16;
    n -= 16;
  }
  // 128 -> 96 bits: the low 64 times k4, added to the high 64.
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k3k4, 0x10));
  // 96 -> 64 bits: the low 32 times k5, added to the high 64.
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00));
  // Barrett reduction to 32 bits.
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly_mu, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly_mu, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, t), 1));
}

bool have_clmul() {
  static const bool yes = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return yes;
}
#endif

}  // namespace

uint32_t crc32_reference(uint32_t crc, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

uint32_t crc32_update_portable(uint32_t crc, const void* data, size_t n) {
  return ~crc32_slice8_raw(~crc, static_cast<const unsigned char*>(data), n);
}

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
#ifdef ZT_CRC32_CLMUL
  if (n >= 64 && have_clmul()) {
    const size_t bulk = n & ~static_cast<size_t>(15);
    c = crc32_clmul_raw(c, p, bulk);
    p += bulk;
    n -= bulk;
  }
#endif
  return ~crc32_slice8_raw(c, p, n);
}

uint32_t crc32_file(const std::string& path, uint64_t* size, uint64_t prefix_bytes, uint32_t* prefix_crc) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw RuntimeError("cannot read '" + path + "': " + std::strerror(errno));
  std::vector<unsigned char> buf(4 << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  size_t got;
  if (prefix_crc) *prefix_crc = 0;
  while ((got = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    if (prefix_crc && total < prefix_bytes) {
      const size_t head = static_cast<size_t>(std::min<uint64_t>(prefix_bytes - total, got));
      crc = crc32_update(crc, buf.data(), head);
      *prefix_crc = crc;
      crc = crc32_update(crc, buf.data() + head, got - head);
    } else {
      crc = crc32_update(crc, buf.data(), got);
    }
    total += got;
  }
  const bool err = std::ferror(f);
  std::fclose(f);
  if (err) throw RuntimeError("read error in '" + path + "'");
  if (prefix_crc && total < prefix_bytes)
    throw RuntimeError("'" + path + "' has " + std::to_string(total) + " bytes, fewer than " +
                       std::to_string(prefix_bytes));
  if (size) *size = total;
  return crc;
}

}  // namespace zt
