#pragma once
// A caching allocator for device memory: segments obtained from a backend (cudaMalloc on the GPU) are split into
// blocks, and freed blocks go back to per-pool free lists (ordered by size, best fit) instead of to the backend,
// so a training loop whose allocation pattern repeats makes no cudaMalloc/cudaFree after its first step.
//
// Requests are rounded up to kRound bytes. Requests up to kSmallRequest come from kSmallSegment segments shared by
// many blocks; larger ones from segments rounded up to kLargeSegmentRound. A free block merges with free
// neighbours of its segment. When the backend is out of memory, the allocator waits for the events of blocks freed
// while other streams still used them (see below), then releases the cached segments and retries once before
// failing with the allocator's statistics in the error.
//
// Streams: every segment, and so every block, belongs to the stream it was first allocated for, and a freed block
// is handed out again only for that stream: work queued on it after the reuse runs after the work queued before the
// free, so the host never waits. A block also used on other streams is declared with record_stream(); when it is
// freed, an event is recorded on each of those streams and the block stays out of the free lists until all of them
// have completed (polled at every allocate() and by process_events()). A caller that uses all its memory on one
// stream, whichever it is, may ignore streams: allocate(bytes) tags every block with kDefaultStream.
// The logic is plain C++ against DeviceMemoryBackend, so it is tested on the CPU with a fake backend.
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

namespace zt::cuda {

// A stream as the allocator sees it: a cudaStream_t on the GPU (nullptr is the legacy default stream). The allocator
// only compares streams and hands them to the backend.
using StreamHandle = void*;
// An event recorded on a stream by the backend (a cudaEvent_t on the GPU).
using EventHandle = void*;
inline constexpr StreamHandle kDefaultStream = nullptr;

class DeviceMemoryBackend {
 public:
  virtual ~DeviceMemoryBackend() = default;
  // Returns nullptr when out of memory (any other failure throws).
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  // An event that completes when the work queued on `stream` so far has completed.
  virtual EventHandle record_event(StreamHandle stream) = 0;
  // Whether the event has completed, without waiting.
  virtual bool event_done(EventHandle event) = 0;
  // Blocks the host until the event has completed.
  virtual void event_synchronize(EventHandle event) = 0;
  // The allocator is done with the event (the backend may reuse it for a later record_event).
  virtual void release_event(EventHandle event) = 0;
};

struct CachingAllocatorStats {
  size_t allocated_bytes = 0;  // in blocks handed out (rounded sizes)
  size_t reserved_bytes = 0;   // in segments held from the backend (allocated + cached)
  size_t peak_allocated_bytes = 0;
  size_t peak_reserved_bytes = 0;
  size_t requests = 0;    // allocate() calls with bytes > 0
  size_t cache_hits = 0;  // requests served from a free block, without the backend
  size_t backend_allocations = 0;
  size_t backend_frees = 0;
  size_t live_blocks = 0;
  // Freed blocks that wait for the events of other streams they were used on (neither allocated nor cached).
  size_t awaiting_blocks = 0;
  size_t awaiting_bytes = 0;
};

class CachingAllocator {
 public:
  static constexpr size_t kRound = 512;
  static constexpr size_t kSmallRequest = size_t(1) << 20;
  static constexpr size_t kSmallSegment = size_t(2) << 20;
  static constexpr size_t kLargeSegmentRound = size_t(2) << 20;

  explicit CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend);
  // Returns every segment to the backend; blocks still handed out are released with them.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Memory for use on `stream` (and, by record_stream, on others). nullptr for 0 bytes; throws zt::RuntimeError
  // when the backend has no memory even after waiting for pending events and releasing the cache.
  void* allocate(size_t bytes, StreamHandle stream);
  void* allocate(size_t bytes) { return allocate(bytes, kDefaultStream); }
  // The block at `ptr` (as allocate() returned it) is also used by work queued on `stream`: when it is freed, it is
  // not reused before that work has completed. Its own stream is ignored; an unknown pointer throws.
  void record_stream(void* ptr, StreamHandle stream);
  // nullptr is ignored; a pointer this allocator did not hand out (or already took back) throws.
  void free(void* ptr);
  // Returns the freed blocks whose streams' events have all completed to the free lists; returns how many.
  size_t process_events();
  // Waits for the events of freed blocks, then returns the segments that hold no live block to the backend;
  // returns the bytes released.
  size_t release_cached();
  CachingAllocatorStats stats() const;
  void reset_peaks();

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    StreamHandle stream = kDefaultStream;  // the segment's stream: the only one the block is reused on
    bool small = false;                    // which pool
    bool allocated = false;
    std::vector<StreamHandle> used_on;  // other streams, from record_stream()
    int pending_events = 0;             // after free: events of used_on not yet completed
    Block* prev = nullptr;              // neighbours in the same segment
    Block* next = nullptr;
    bool cached() const { return !allocated && pending_events == 0; }
  };
  // Per stream, then best fit: the smallest block that fits, the lowest address among equal sizes.
  struct ByStreamSizeAddress {
    bool operator()(const Block* a, const Block* b) const {
      if (a->stream != b->stream) return std::less<StreamHandle>()(a->stream, b->stream);
      if (a->size != b->size) return a->size < b->size;
      return std::less<char*>()(a->ptr, b->ptr);
    }
  };
  using FreeList = std::set<Block*, ByStreamSizeAddress>;
  struct PendingEvent {
    EventHandle event;
    Block* block;
  };

  FreeList& pool(bool small) { return small ? small_free_ : large_free_; }
  Block* take_free_block(size_t size, bool small, StreamHandle stream);
  // nullptr when the backend is out of memory.
  Block* new_segment(size_t size, bool small, StreamHandle stream);
  void split(Block* block, size_t size);
  // Merges a block that has become reusable with its cached neighbours and puts it on its free list.
  void cache_block(Block* block);
  // Folds the block's next neighbour (cached, same segment) into it.
  void absorb_next(Block* block);
  // Caches the freed blocks whose events have all completed (waiting for every event when `wait`); returns how
  // many became reusable.
  size_t drain_events(bool wait);
  size_t release_cached_locked();

  std::unique_ptr<DeviceMemoryBackend> backend_;
  mutable std::mutex mutex_;
  FreeList small_free_, large_free_;
  std::unordered_map<void*, Block*> live_;
  // Per stream, in the order recorded: events on one stream complete in that order.
  std::map<StreamHandle, std::deque<PendingEvent>> pending_events_;
  CachingAllocatorStats stats_;
};

}  // namespace zt::cuda
