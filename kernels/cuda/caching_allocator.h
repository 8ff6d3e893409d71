#pragma once
// A caching allocator for device memory: segments obtained from a backend (cudaMalloc on the GPU) are split into
// blocks, and freed blocks go back to per-pool free lists (ordered by size, best fit) instead of to the backend,
// so a training loop whose allocation pattern repeats makes no cudaMalloc/cudaFree after its first step.
//
// Requests are rounded up to kRound bytes. Requests up to kSmallRequest come from kSmallSegment segments shared by
// many blocks; larger ones from segments rounded up to kLargeSegmentRound. A free block merges with free
// neighbours of its segment. When the backend is out of memory, the cached segments are released and the request
// is retried once before failing with the allocator's statistics in the error.
//
// Blocks are not tagged with streams: memory freed by work queued on one stream may be handed out again at once, so
// all allocations must be used on a single stream (or the caller synchronizes before freeing).
// The logic is plain C++ against DeviceMemoryBackend, so it is tested on the CPU with a fake backend.
#include <cstddef>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

namespace zt::cuda {

class DeviceMemoryBackend {
 public:
  virtual ~DeviceMemoryBackend() = default;
  // Returns nullptr when out of memory (any other failure throws).
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
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

  // nullptr for 0 bytes; throws zt::RuntimeError when the backend has no memory even after releasing the cache.
  void* allocate(size_t bytes);
  // nullptr is ignored; a pointer this allocator did not hand out (or already took back) throws.
  void free(void* ptr);
  // Returns the segments that hold no live block to the backend; returns the bytes released.
  size_t release_cached();
  CachingAllocatorStats stats() const;
  void reset_peaks();

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    bool small = false;  // which pool
    bool allocated = false;
    Block* prev = nullptr;  // neighbours in the same segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using FreeList = std::set<Block*, BySizeThenAddress>;

  FreeList& pool(bool small) { return small ? small_free_ : large_free_; }
  Block* take_free_block(size_t size, bool small);
  Block* new_segment(size_t size, bool small);
  void split(Block* block, size_t size);
  // Folds the block's next neighbour (free, same segment) into it.
  void absorb_next(Block* block);
  size_t release_cached_locked();

  std::unique_ptr<DeviceMemoryBackend> backend_;
  mutable std::mutex mutex_;
  FreeList small_free_, large_free_;
  std::unordered_map<void*, Block*> live_;
  CachingAllocatorStats stats_;
};

}  // namespace zt::cuda
