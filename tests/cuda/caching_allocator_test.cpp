// The caching allocator's logic on the CPU, against a fake backend that hands out addresses from a pretend device
// of fixed capacity and checks every segment it gets back.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/base/error.h"
#include "kernels/cuda/caching_allocator.h"

namespace {

using zt::cuda::CachingAllocator;
using zt::cuda::DeviceMemoryBackend;

constexpr size_t kMiB = size_t(1) << 20;

// State outside the backend, so that the test can still look at it after the allocator (its owner) is gone.
struct FakeDevice {
  size_t capacity = 0;
  size_t in_use = 0;
  uintptr_t next_address = 0x10000000;
  std::map<uintptr_t, size_t> segments;
  size_t allocations = 0, frees = 0;
};

class FakeBackend : public DeviceMemoryBackend {
 public:
  explicit FakeBackend(FakeDevice& dev) : dev_(dev) {}
  void* allocate(size_t bytes) override {
    if (dev_.in_use + bytes > dev_.capacity) return nullptr;
    const uintptr_t a = dev_.next_address;
    dev_.next_address += bytes + 4096;  // a gap, so that neighbouring segments never look contiguous
    dev_.segments[a] = bytes;
    dev_.in_use += bytes;
    dev_.allocations++;
    return reinterpret_cast<void*>(a);
  }
  void deallocate(void* ptr, size_t bytes) override {
    auto it = dev_.segments.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == dev_.segments.end()) throw std::logic_error("fake device: unknown segment freed");
    if (it->second != bytes) throw std::logic_error("fake device: segment freed with the wrong size");
    dev_.in_use -= bytes;
    dev_.segments.erase(it);
    dev_.frees++;
  }

 private:
  FakeDevice& dev_;
};

struct Fixture {
  FakeDevice dev;
  std::unique_ptr<CachingAllocator> alloc;
  explicit Fixture(size_t capacity = 64 * kMiB) {
    dev.capacity = capacity;
    alloc = std::make_unique<CachingAllocator>(std::make_unique<FakeBackend>(dev));
  }
};

char* as_bytes(void* p) { return static_cast<char*>(p); }

TEST(CachingAllocator, FreedBlockIsReusedWithoutTheBackend) {
  Fixture f;
  void* a = f.alloc->allocate(1000);
  f.alloc->free(a);
  void* b = f.alloc->allocate(1000);
  EXPECT_EQ(a, b);
  EXPECT_EQ(f.dev.allocations, 1u);
  const auto s = f.alloc->stats();
  EXPECT_EQ(s.requests, 2u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.backend_allocations, 1u);
}

TEST(CachingAllocator, RoundsTo512AndSplitsSmallSegments) {
  Fixture f;
  void* a = f.alloc->allocate(1);
  void* b = f.alloc->allocate(513);
  void* c = f.alloc->allocate(512);
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 512);
  EXPECT_EQ(as_bytes(c), as_bytes(b) + 1024);
  const auto s = f.alloc->stats();
  EXPECT_EQ(s.allocated_bytes, 512u + 1024u + 512u);
  EXPECT_EQ(s.reserved_bytes, CachingAllocator::kSmallSegment);
  EXPECT_EQ(f.dev.allocations, 1u);
  EXPECT_EQ(s.live_blocks, 3u);
  EXPECT_EQ(f.alloc->allocate(0), nullptr);
}

TEST(CachingAllocator, FreeBlocksMergeWithTheirNeighbours) {
  Fixture f;
  void* a = f.alloc->allocate(kMiB / 2);
  void* b = f.alloc->allocate(kMiB / 2);
  void* c = f.alloc->allocate(kMiB / 2);
  f.alloc->free(a);
  f.alloc->free(c);
  f.alloc->free(b);  // merges with both sides: the whole 2 MiB segment is one free block again
  void* big = f.alloc->allocate(kMiB);
  EXPECT_EQ(big, a);
  void* next = f.alloc->allocate(kMiB);
  EXPECT_EQ(as_bytes(next), as_bytes(a) + kMiB);
  EXPECT_EQ(f.dev.allocations, 1u);
}

TEST(CachingAllocator, BestFitPrefersTheSmallestFreeBlock) {
  Fixture f;
  void* large_hole = f.alloc->allocate(64 * 1024);
  void* keep1 = f.alloc->allocate(512);
  void* small_hole = f.alloc->allocate(4096);
  void* keep2 = f.alloc->allocate(512);
  f.alloc->free(large_hole);
  f.alloc->free(small_hole);
  EXPECT_EQ(f.alloc->allocate(4096), small_hole);
  EXPECT_EQ(f.alloc->allocate(4096), large_hole);
  f.alloc->free(keep1);
  f.alloc->free(keep2);
}

TEST(CachingAllocator, LargeRequestsRoundSegmentsAndSplitOnlyBigRemainders) {
  Fixture f;
  void* a = f.alloc->allocate(3 * kMiB);  // segment rounded to 4 MiB; the 1 MiB tail stays with the block
  EXPECT_EQ(f.dev.segments.begin()->second, 4 * kMiB);
  EXPECT_EQ(f.alloc->stats().allocated_bytes, 4 * kMiB);
  f.alloc->free(a);
  EXPECT_EQ(f.alloc->allocate(3 * kMiB), a);
  EXPECT_EQ(f.dev.allocations, 1u);

  void* big = f.alloc->allocate(10 * kMiB);
  f.alloc->free(big);
  void* part = f.alloc->allocate(4 * kMiB);  // 6 MiB remain: more than a small request, so the block is split
  void* rest = f.alloc->allocate(5 * kMiB);
  EXPECT_EQ(part, big);
  EXPECT_EQ(as_bytes(rest), as_bytes(big) + 4 * kMiB);
  EXPECT_EQ(f.dev.allocations, 2u);
  // A small request never takes large-pool memory.
  void* small = f.alloc->allocate(4096);
  EXPECT_EQ(f.dev.allocations, 3u);
  f.alloc->free(small);
}

TEST(CachingAllocator, StatsTrackPeaksAndLiveBlocks) {
  Fixture f;
  std::vector<void*> ps;
  for (int i = 0; i < 4; i++) ps.push_back(f.alloc->allocate(3 * kMiB));
  for (void* p : ps) f.alloc->free(p);
  auto s = f.alloc->stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.peak_allocated_bytes, 16 * kMiB);
  EXPECT_EQ(s.reserved_bytes, 16 * kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, 16 * kMiB);
  f.alloc->reset_peaks();
  void* p = f.alloc->allocate(kMiB);
  s = f.alloc->stats();
  EXPECT_EQ(s.peak_allocated_bytes, kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, 18 * kMiB);  // a new small segment
  f.alloc->free(p);
}

TEST(CachingAllocator, ReleaseReturnsOnlyWhollyFreeSegments) {
  Fixture f;
  void* a = f.alloc->allocate(8 * kMiB);
  void* b = f.alloc->allocate(1000);
  void* c = f.alloc->allocate(1000);
  f.alloc->free(a);
  f.alloc->free(b);  // c keeps the small segment alive
  EXPECT_EQ(f.alloc->release_cached(), 8 * kMiB);
  EXPECT_EQ(f.dev.frees, 1u);
  EXPECT_EQ(f.dev.segments.size(), 1u);
  auto s = f.alloc->stats();
  EXPECT_EQ(s.reserved_bytes, CachingAllocator::kSmallSegment);
  EXPECT_EQ(s.backend_frees, 1u);
  f.alloc->free(c);
  EXPECT_EQ(f.alloc->release_cached(), CachingAllocator::kSmallSegment);
  EXPECT_EQ(f.dev.in_use, 0u);
  EXPECT_EQ(f.alloc->stats().reserved_bytes, 0u);
}

TEST(CachingAllocator, SteadyStateMakesNoBackendCalls) {
  Fixture f;
  const std::vector<size_t> pattern = {4096, 3 * kMiB, 700, 12 * kMiB, 96 * 1024, 2 * kMiB + 1};
  size_t after_first = 0, hits_after_first = 0;
  for (int step = 0; step < 50; step++) {
    std::vector<void*> ps;
    for (size_t bytes : pattern) ps.push_back(f.alloc->allocate(bytes));
    for (size_t i = ps.size(); i-- > 0;) f.alloc->free(ps[i]);
    if (step == 0) {
      after_first = f.dev.allocations;
      hits_after_first = f.alloc->stats().cache_hits;
    }
  }
  EXPECT_EQ(f.dev.allocations, after_first);
  EXPECT_EQ(f.dev.frees, 0u);
  EXPECT_EQ(f.alloc->stats().cache_hits - hits_after_first, 49 * pattern.size());
}

TEST(CachingAllocator, OutOfMemoryReleasesTheCacheThenFailsClearly) {
  Fixture f(10 * kMiB);
  void* a = f.alloc->allocate(6 * kMiB);
  f.alloc->free(a);  // cached: 6 MiB of the 10 are held
  void* b = f.alloc->allocate(8 * kMiB);  // needs the cache released first
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(f.dev.frees, 1u);
  try {
    f.alloc->allocate(4 * kMiB);
    FAIL() << "an allocation beyond the device's capacity succeeded";
  } catch (const zt::RuntimeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of device memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(4 * kMiB)), std::string::npos) << msg;
  }
  f.alloc->free(b);
}

TEST(CachingAllocator, RejectsForeignAndDoubleFrees) {
  Fixture f;
  void* a = f.alloc->allocate(1000);
  int local = 0;
  EXPECT_THROW(f.alloc->free(&local), zt::RuntimeError);
  EXPECT_THROW(f.alloc->free(as_bytes(a) + 512), zt::RuntimeError);
  f.alloc->free(a);
  EXPECT_THROW(f.alloc->free(a), zt::RuntimeError);
  EXPECT_NO_THROW(f.alloc->free(nullptr));
}

TEST(CachingAllocator, DestructorReturnsEverySegment) {
  Fixture f;
  f.alloc->allocate(1000);  // still live at destruction
  void* b = f.alloc->allocate(5 * kMiB);
  f.alloc->allocate(9 * kMiB);
  f.alloc->free(b);
  EXPECT_EQ(f.dev.segments.size(), 3u);
  f.alloc.reset();
  EXPECT_EQ(f.dev.segments.size(), 0u);
  EXPECT_EQ(f.dev.in_use, 0u);
}

}  // namespace
