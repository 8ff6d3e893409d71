// The fast CRC-32 (carry-less multiplication folding, slicing-by-8 for the tail) against a bit-at-a-time reference,
// over lengths and alignments that exercise every path of the folding (64-byte blocks, 16-byte steps, tails), and
// chained updates as the checkpoint reader uses them.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/checkpoint/crc32.h"

namespace zt {
namespace {

TEST(Crc32, KnownVectors) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32_update(0, check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(crc32_reference(0, check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(crc32_update(0, "", 0), 0u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(crc32_update(0, fox.data(), fox.size()), 0x414FA339u);
  std::vector<unsigned char> zeros(4096, 0);
  EXPECT_EQ(crc32_update(0, zeros.data(), zeros.size()), crc32_reference(0, zeros.data(), zeros.size()));
}

TEST(Crc32, MatchesReferenceOverLengthsAndAlignments) {
  std::mt19937 rng(7);
  std::vector<unsigned char> buf(70000);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  for (size_t n : {511u, 512u, 513u, 1023u, 4096u, 4111u, 65536u, 69990u}) lengths.push_back(n);
  for (size_t n : lengths) {
    for (size_t align = 0; align < 8 && align + n <= buf.size(); align += 3) {
      const unsigned char* p = buf.data() + align;
      const uint32_t want = crc32_reference(0, p, n);
      ASSERT_EQ(crc32_update(0, p, n), want) << "length " << n << " offset " << align;
      ASSERT_EQ(crc32_update_portable(0, p, n), want) << "length " << n << " offset " << align;
    }
  }
}

TEST(Crc32, ChainedUpdatesEqualOnePass) {
  std::mt19937 rng(11);
  std::vector<unsigned char> buf(200000);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  const uint32_t whole = crc32_reference(0, buf.data(), buf.size());
  uint32_t crc = 0;
  size_t pos = 0;
  while (pos < buf.size()) {
    const size_t n = std::min(buf.size() - pos, static_cast<size_t>(rng() % 9000));
    crc = crc32_update(crc, buf.data() + pos, n);
    pos += n;
  }
  EXPECT_EQ(crc, whole);
}

}  // namespace
}  // namespace zt
