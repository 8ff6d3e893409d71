// The caching allocator's logic on the CPU, against a fake backend that hands out addresses from a pretend device
// of fixed capacity and checks every segment it gets back, and whose streams' recorded events complete when the test
// says so.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

#include "engine/base/error.h"
#include "kernels/cuda/caching_allocator.h"

namespace {

using zt::cuda::CachingAllocator;
using zt::cuda::DeviceMemoryBackend;
using zt::cuda::EventHandle;
using zt::cuda::StreamHandle;

constexpr size_t kMiB = size_t(1) << 20;

// State outside the backend, so that the test can still look at it after the allocator (its owner) is gone.
struct FakeDevice {
  size_t capacity = 0;
  size_t in_use = 0;
  uintptr_t next_address = 0x10000000;
  std::map<uintptr_t, size_t> segments;
  size_t allocations = 0, frees = 0;

  // Streams: an event recorded on a stream completes once complete() has been called for the stream after it (or
  // once the host waits for it, which stands for the device finishing that work).
  struct Event {
    StreamHandle stream;
    size_t seq;
    bool released;
  };
  std::vector<Event> events;  // every event ever recorded; a handle is its index + 1
  std::map<StreamHandle, size_t> recorded, completed;
  size_t live_events = 0, synchronizations = 0;
  int records_before_failure = -1;  // >= 0: that many more event records succeed, then one fails
  void complete(StreamHandle s) { completed[s] = recorded[s]; }
  size_t events_on(StreamHandle s) { return recorded[s]; }
  Event& event(EventHandle h) {
    const uintptr_t i = reinterpret_cast<uintptr_t>(h);
    if (i == 0 || i > events.size() || events[i - 1].released) {
      throw std::logic_error("fake device: use of an unknown or released event");
    }
    return events[i - 1];
  }
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
  EventHandle record_event(StreamHandle stream) override {
    if (dev_.records_before_failure == 0) throw std::runtime_error("fake device: event record failed");
    if (dev_.records_before_failure > 0) dev_.records_before_failure--;
    dev_.events.push_back({stream, ++dev_.recorded[stream], false});
    dev_.live_events++;
    return reinterpret_cast<EventHandle>(uintptr_t(dev_.events.size()));
  }
  bool event_done(EventHandle h) override {
    const FakeDevice::Event& e = dev_.event(h);
    return dev_.completed[e.stream] >= e.seq;
  }
  void event_synchronize(EventHandle h) override {
    const FakeDevice::Event& e = dev_.event(h);
    dev_.completed[e.stream] = std::max(dev_.completed[e.stream], e.seq);
    dev_.synchronizations++;
  }
  void release_event(EventHandle h) override {
    dev_.event(h).released = true;
    dev_.live_events--;
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

// Pretend streams: the allocator only compares them and hands them to the backend.
const StreamHandle kA = reinterpret_cast<StreamHandle>(uintptr_t(0xa));
const StreamHandle kB = reinterpret_cast<StreamHandle>(uintptr_t(0xb));
const StreamHandle kC = reinterpret_cast<StreamHandle>(uintptr_t(0xc));

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

// Streams.

TEST(CachingAllocatorStreams, FreedBlockIsNotHandedToAnotherStream) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  f.alloc->free(a);
  void* b = f.alloc->allocate(1000, kB);
  EXPECT_NE(b, a);
  EXPECT_EQ(f.dev.allocations, 2u);  // B's small segment is its own
  EXPECT_EQ(f.alloc->allocate(1000, kA), a);
  // Large blocks too, and the default stream is a stream like the others.
  void* big = f.alloc->allocate(3 * kMiB, kA);
  f.alloc->free(big);
  void* big_default = f.alloc->allocate(3 * kMiB);
  EXPECT_NE(big_default, big);
  EXPECT_EQ(f.alloc->allocate(3 * kMiB, kA), big);
  EXPECT_EQ(f.dev.events.size(), 0u);  // no block was used on a second stream: no event
}

TEST(CachingAllocatorStreams, BlockUsedOnAnotherStreamWaitsForItsEvent) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  EXPECT_EQ(f.dev.events_on(kB), 1u);  // recorded at the free
  auto s = f.alloc->stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.awaiting_blocks, 1u);
  EXPECT_EQ(s.awaiting_bytes, 1024u);
  // Not on its own stream, not on the other: B's work may still read or write it.
  void* a2 = f.alloc->allocate(1000, kA);
  void* b2 = f.alloc->allocate(1000, kB);
  EXPECT_NE(a2, a);
  EXPECT_NE(b2, a);
  EXPECT_EQ(f.alloc->process_events(), 0u);
  f.dev.complete(kB);
  EXPECT_EQ(f.alloc->process_events(), 1u);
  s = f.alloc->stats();
  EXPECT_EQ(s.awaiting_blocks, 0u);
  EXPECT_EQ(s.awaiting_bytes, 0u);
  EXPECT_EQ(f.dev.live_events, 0u);
  EXPECT_EQ(f.alloc->allocate(1000, kA), a);  // back on A's free list
  EXPECT_EQ(f.dev.synchronizations, 0u);       // the host never waited
}

TEST(CachingAllocatorStreams, TheNextAllocatePollsTheEvents) {
  Fixture f;
  void* a = f.alloc->allocate(4 * kMiB, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  void* other = f.alloc->allocate(4 * kMiB, kA);
  EXPECT_NE(other, a);
  f.dev.complete(kB);
  EXPECT_EQ(f.alloc->allocate(4 * kMiB, kA), a);
  EXPECT_EQ(f.dev.allocations, 2u);
  EXPECT_EQ(f.alloc->stats().cache_hits, 1u);
}

TEST(CachingAllocatorStreams, WaitsForEveryRecordedStream) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->record_stream(a, kC);
  f.alloc->record_stream(a, kB);  // once per stream
  f.alloc->record_stream(a, kA);  // its own stream needs no event
  f.alloc->free(a);
  EXPECT_EQ(f.dev.events_on(kA), 0u);
  EXPECT_EQ(f.dev.events_on(kB), 1u);
  EXPECT_EQ(f.dev.events_on(kC), 1u);
  f.dev.complete(kB);
  EXPECT_EQ(f.alloc->process_events(), 0u);
  EXPECT_NE(f.alloc->allocate(1000, kA), a);
  f.dev.complete(kC);
  EXPECT_EQ(f.alloc->process_events(), 1u);
  EXPECT_EQ(f.alloc->allocate(1000, kA), a);
  EXPECT_EQ(f.dev.live_events, 0u);
}

TEST(CachingAllocatorStreams, StreamsAreForgottenOnceTheBlockIsFree) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  f.dev.complete(kB);
  f.alloc->process_events();
  void* again = f.alloc->allocate(1000, kA);
  ASSERT_EQ(again, a);
  f.alloc->free(again);  // its new life was on A only: cached at once
  EXPECT_EQ(f.dev.events_on(kB), 1u);
  EXPECT_EQ(f.alloc->stats().awaiting_blocks, 0u);
  EXPECT_EQ(f.alloc->allocate(1000, kA), a);
}

TEST(CachingAllocatorStreams, WaitingBlockMergesWhenItsEventsComplete) {
  Fixture f;
  void* a = f.alloc->allocate(kMiB / 2, kA);
  void* b = f.alloc->allocate(kMiB / 2, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  f.alloc->free(b);  // cached, but it may not merge with a, which B still uses
  void* c = f.alloc->allocate(kMiB, kA);
  EXPECT_EQ(c, b);
  f.alloc->free(c);
  f.dev.complete(kB);
  f.alloc->process_events();
  EXPECT_EQ(f.alloc->allocate(kMiB, kA), a);  // the segment is one free block again
  EXPECT_EQ(f.dev.allocations, 1u);
}

TEST(CachingAllocatorStreams, StatsAddUpWithWaitingBlocks) {
  Fixture f;
  void* a = f.alloc->allocate(3 * kMiB, kA);  // a 4 MiB block
  void* b = f.alloc->allocate(1000, kB);
  void* c = f.alloc->allocate(1000, kB);
  f.alloc->record_stream(a, kB);
  f.alloc->record_stream(b, kA);
  f.alloc->free(a);
  f.alloc->free(b);
  auto s = f.alloc->stats();
  EXPECT_EQ(s.allocated_bytes, 1024u);
  EXPECT_EQ(s.live_blocks, 1u);
  EXPECT_EQ(s.awaiting_blocks, 2u);
  EXPECT_EQ(s.awaiting_bytes, 4 * kMiB + 1024u);
  EXPECT_EQ(s.reserved_bytes, 4 * kMiB + CachingAllocator::kSmallSegment);
  EXPECT_EQ(s.peak_allocated_bytes, 4 * kMiB + 2048u);
  f.dev.complete(kA);
  EXPECT_EQ(f.alloc->process_events(), 1u);  // b
  s = f.alloc->stats();
  EXPECT_EQ(s.awaiting_blocks, 1u);
  EXPECT_EQ(s.awaiting_bytes, 4 * kMiB);
  f.alloc->free(c);
  // release_cached waits for a's event and returns both segments.
  EXPECT_EQ(f.alloc->release_cached(), 4 * kMiB + CachingAllocator::kSmallSegment);
  EXPECT_EQ(f.dev.synchronizations, 1u);
  s = f.alloc->stats();
  EXPECT_EQ(s.awaiting_blocks, 0u);
  EXPECT_EQ(s.awaiting_bytes, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(f.dev.in_use, 0u);
  EXPECT_EQ(f.dev.live_events, 0u);
}

TEST(CachingAllocatorStreams, SteadyStateAcrossStreamsMakesNoBackendCalls) {
  Fixture f;
  size_t after_first = 0;
  for (int step = 0; step < 20; step++) {
    void* grads = f.alloc->allocate(12 * kMiB, kA);  // written on A, reduced on B
    void* staging = f.alloc->allocate(96 * 1024, kB);
    f.alloc->record_stream(grads, kB);
    f.alloc->free(staging);
    f.alloc->free(grads);
    f.dev.complete(kB);
    if (step == 0) after_first = f.dev.allocations;
  }
  EXPECT_EQ(f.dev.allocations, after_first);
  EXPECT_EQ(f.dev.frees, 0u);
  EXPECT_EQ(f.dev.synchronizations, 0u);
  EXPECT_EQ(f.dev.live_events, 1u);  // the last step's, not yet polled
}

TEST(CachingAllocatorStreams, OutOfMemoryWaitsForWaitingBlocksFirst) {
  Fixture f(10 * kMiB);
  void* a = f.alloc->allocate(6 * kMiB, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  // The device has room for one 6 MiB segment: the request waits for B and reuses a.
  EXPECT_EQ(f.alloc->allocate(6 * kMiB, kA), a);
  EXPECT_EQ(f.dev.synchronizations, 1u);
  EXPECT_EQ(f.dev.allocations, 1u);
  EXPECT_EQ(f.dev.frees, 0u);
  EXPECT_EQ(f.alloc->stats().awaiting_blocks, 0u);
}

TEST(CachingAllocatorStreams, OutOfMemoryOnAnotherStreamWaitsThenReleases) {
  Fixture f(10 * kMiB);
  void* a = f.alloc->allocate(6 * kMiB, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  // C cannot reuse A's block: after B's event the segment is wholly free and goes back to make room.
  void* c = f.alloc->allocate(8 * kMiB, kC);
  EXPECT_NE(c, nullptr);
  EXPECT_EQ(f.dev.synchronizations, 1u);
  EXPECT_EQ(f.dev.frees, 1u);
  EXPECT_EQ(f.alloc->stats().reserved_bytes, 8 * kMiB);
  f.alloc->free(c);
}

TEST(CachingAllocatorStreams, OutOfMemoryFailsClearlyAfterWaiting) {
  Fixture f(10 * kMiB);
  void* keep = f.alloc->allocate(4 * kMiB, kA);
  void* a = f.alloc->allocate(4 * kMiB, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->free(a);
  try {
    f.alloc->allocate(8 * kMiB, kA);
    FAIL() << "an allocation beyond the device's capacity succeeded";
  } catch (const zt::RuntimeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of device memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(8 * kMiB)), std::string::npos) << msg;
  }
  // It waited for B, then gave a's segment back, before failing.
  EXPECT_EQ(f.dev.synchronizations, 1u);
  EXPECT_EQ(f.dev.frees, 1u);
  const auto s = f.alloc->stats();
  EXPECT_EQ(s.awaiting_blocks, 0u);
  EXPECT_EQ(s.reserved_bytes, 4 * kMiB);
  EXPECT_EQ(s.allocated_bytes, 4 * kMiB);
  f.alloc->free(keep);
}

TEST(CachingAllocatorStreams, RecordStreamNeedsALiveBlock) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  int local = 0;
  EXPECT_THROW(f.alloc->record_stream(&local, kB), zt::RuntimeError);
  EXPECT_THROW(f.alloc->record_stream(as_bytes(a) + 512, kB), zt::RuntimeError);
  f.alloc->free(a);
  EXPECT_THROW(f.alloc->record_stream(a, kB), zt::RuntimeError);
}

TEST(CachingAllocatorStreams, FailedEventRecordLeavesTheBlockLive) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  f.alloc->record_stream(a, kB);
  f.alloc->record_stream(a, kC);
  f.dev.records_before_failure = 1;  // B's event is recorded, C's fails
  EXPECT_THROW(f.alloc->free(a), std::runtime_error);
  EXPECT_EQ(f.alloc->stats().live_blocks, 1u);
  EXPECT_EQ(f.dev.events_on(kB), 1u);
  EXPECT_EQ(f.dev.live_events, 0u);  // given back
  f.dev.records_before_failure = -1;
  f.alloc->free(a);
  EXPECT_EQ(f.alloc->stats().awaiting_blocks, 1u);
}

TEST(CachingAllocatorStreams, DestructorReturnsWaitingSegmentsAndEvents) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kA);
  void* b = f.alloc->allocate(5 * kMiB, kB);
  f.alloc->record_stream(a, kB);
  f.alloc->record_stream(b, kA);
  f.alloc->record_stream(b, kC);
  f.alloc->free(a);
  f.alloc->free(b);
  EXPECT_EQ(f.dev.live_events, 3u);
  f.alloc.reset();
  EXPECT_EQ(f.dev.segments.size(), 0u);
  EXPECT_EQ(f.dev.live_events, 0u);
}

}  // namespace
