// The per-shape cache of cuBLASLt algorithms, on the CPU: find() runs once per distinct key, every field of the
// key separates entries, and a failed find() leaves nothing cached.
#include <gtest/gtest.h>

#include <stdexcept>

#include "kernels/cuda/matmul_algo_cache.h"

namespace {

using zt::cuda::MatmulAlgo;
using zt::cuda::MatmulAlgoCache;
using zt::cuda::MatmulKey;

MatmulKey base_key() {
  MatmulKey k;
  k.m = 768;
  k.n = 4096;
  k.k = 3072;
  k.lda = 768;
  k.ldb = 3072;
  k.ldc = 768;
  k.dtype = 14;
  k.epilogue = 1;
  k.alignment = 16;
  k.beta_zero = true;
  return k;
}

MatmulAlgo algo_tagged(uint64_t tag) {
  MatmulAlgo a;
  a.data[0] = tag;
  a.data[7] = ~tag;
  a.workspace_bytes = tag * 16;
  return a;
}

TEST(MatmulAlgoCache, FindsOncePerKeyAndReturnsTheStoredAlgo) {
  MatmulAlgoCache cache;
  int calls = 0;
  for (int i = 0; i < 5; i++) {
    const MatmulAlgo a = cache.get(base_key(), [&] {
      calls++;
      return algo_tagged(42);
    });
    EXPECT_EQ(a.data[0], 42u);
    EXPECT_EQ(a.data[7], ~uint64_t(42));
    EXPECT_EQ(a.workspace_bytes, 42u * 16);
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 4u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(MatmulAlgoCache, EveryKeyFieldSeparatesEntries) {
  MatmulAlgoCache cache;
  std::vector<MatmulKey> keys(13, base_key());
  keys[1].m++;
  keys[2].n++;
  keys[3].k++;
  keys[4].trans_a = true;
  keys[5].trans_b = true;
  keys[6].lda++;
  keys[7].ldb++;
  keys[8].ldc++;
  keys[9].dtype = 2;
  keys[10].epilogue = 4;
  keys[11].alignment = 4;
  keys[12].beta_zero = false;
  for (size_t i = 0; i < keys.size(); i++) cache.get(keys[i], [&] { return algo_tagged(i + 1); });
  EXPECT_EQ(cache.size(), keys.size());
  for (size_t i = 0; i < keys.size(); i++) {
    const MatmulAlgo a = cache.get(keys[i], []() -> MatmulAlgo { throw std::logic_error("must be cached"); });
    EXPECT_EQ(a.data[0], i + 1) << "key " << i;
  }
  EXPECT_EQ(cache.hits(), keys.size());
}

TEST(MatmulAlgoCache, FailedFindCachesNothing) {
  MatmulAlgoCache cache;
  EXPECT_THROW(cache.get(base_key(), []() -> MatmulAlgo { throw std::runtime_error("no algorithm"); }),
               std::runtime_error);
  EXPECT_EQ(cache.size(), 0u);
  int calls = 0;
  cache.get(base_key(), [&] {
    calls++;
    return algo_tagged(7);
  });
  EXPECT_EQ(calls, 1);
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.hits() + cache.misses(), 0u);
}

}  // namespace
