// The buffer pool: aligned, fixed, reused, and strict about what comes back.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <set>

#include "engine/base/error.h"
#include "offload/pinned_buffer_pool.h"

namespace zt::offload {
namespace {

TEST(PinnedBufferPool, FixedAlignedReused) {
  PinnedBufferPool pool(3, 10000, /*pin=*/true);
  EXPECT_EQ(pool.count(), 3u);
  EXPECT_EQ(pool.buffer_bytes(), 12288u);  // rounded up to pages
  std::set<void*> first;
  for (int i = 0; i < 3; i++) {
    void* p = pool.acquire();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
    first.insert(p);
  }
  EXPECT_EQ(first.size(), 3u);
  EXPECT_EQ(pool.free_count(), 0u);
  EXPECT_EQ(pool.try_acquire(), nullptr);
  EXPECT_THROW(pool.acquire(), RuntimeError);
  for (void* p : first) pool.release(p);
  EXPECT_EQ(pool.free_count(), 3u);
  // The same buffers come back: nothing is allocated after construction.
  std::set<void*> second;
  for (int i = 0; i < 3; i++) second.insert(pool.acquire());
  EXPECT_EQ(first, second);
}

TEST(PinnedBufferPool, ForeignAndDoubleReleaseThrow) {
  PinnedBufferPool pool(2, 4096, false);
  EXPECT_FALSE(pool.locked());
  void* p = pool.acquire();
  pool.release(p);
  EXPECT_THROW(pool.release(p), RuntimeError);
  int local = 0;
  EXPECT_THROW(pool.release(&local), RuntimeError);
  EXPECT_THROW(PinnedBufferPool(0, 4096), RuntimeError);
}

TEST(PinnedBufferPool, LeaseReturnsOnScopeExit) {
  PinnedBufferPool pool(1, 4096);
  {
    PinnedBuffer lease(pool);
    EXPECT_NE(lease.data(), nullptr);
    EXPECT_EQ(pool.free_count(), 0u);
  }
  EXPECT_EQ(pool.free_count(), 1u);
}

int g_allocs = 0;
void* counting_alloc(size_t bytes) {
  g_allocs++;
  return std::aligned_alloc(4096, bytes);
}
void counting_free(void* p, size_t) { std::free(p); }

TEST(PinnedBufferPool, AllocatorHookIsUsed) {
  g_allocs = 0;  // a count of this run only (--gtest_repeat runs the test again in the same process)
  set_host_allocator({counting_alloc, counting_free, true});
  {
    PinnedBufferPool pool(4, 8192, true);
    EXPECT_TRUE(pool.locked());
    EXPECT_EQ(g_allocs, 4);
  }
  set_host_allocator({});
  PinnedBufferPool pool(1, 4096, false);
  EXPECT_EQ(g_allocs, 4);
}

}  // namespace
}  // namespace zt::offload
