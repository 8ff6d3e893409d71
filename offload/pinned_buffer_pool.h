#pragma once
// A fixed set of page-aligned host buffers, allocated once and reused, for staging swap I/O and GPU copies.
#include <cstddef>
#include <mutex>
#include <vector>

namespace zt::offload {

// How the pool gets its memory. The default is posix_memalign(4096) + best-effort mlock. The GPU training path
// registers memory registered with CUDA here before creating pools (engine/zero/cuda/pinned_host_allocator.h), so
// that the buffers are pinned, as CUDA knows it, for async H2D/D2H copies.
struct HostAllocator {
  void* (*allocate)(size_t bytes) = nullptr;  // must return 4096-aligned memory or nullptr
  void (*release)(void* p, size_t bytes) = nullptr;
  bool pinned = false;  // the allocator pins by itself (no mlock needed)
};
void set_host_allocator(const HostAllocator& allocator);  // {nullptr, nullptr} restores the default
HostAllocator host_allocator();

class PinnedBufferPool {
 public:
  // `count` buffers of `bytes_each` (rounded up to 4096) bytes. pin: mlock them (default allocator; failure, e.g.
  // RLIMIT_MEMLOCK, is logged once and ignored). Throws RuntimeError when the memory cannot be allocated.
  PinnedBufferPool(size_t count, size_t bytes_each, bool pin = true);
  ~PinnedBufferPool();
  PinnedBufferPool(const PinnedBufferPool&) = delete;
  PinnedBufferPool& operator=(const PinnedBufferPool&) = delete;

  // A free buffer, or nullptr when all are in use. Never allocates.
  void* try_acquire();
  // A free buffer; throws RuntimeError when all `count` are in use (a caller that holds more than it declared).
  void* acquire();
  // Returns a buffer from this pool; throws RuntimeError for a foreign pointer or a double release.
  void release(void* buffer);

  size_t count() const { return buffers_.size(); }
  size_t buffer_bytes() const { return bytes_each_; }
  size_t free_count() const;
  bool locked() const { return locked_; }  // every buffer is page-locked (mlock or a pinning allocator)

 private:
  size_t bytes_each_;
  bool locked_ = false;
  HostAllocator allocator_;
  std::vector<void*> buffers_;
  std::vector<bool> in_use_;
  std::vector<size_t> free_;  // indices of free buffers (a stack)
  mutable std::mutex mu_;
};

// RAII lease of one buffer.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(PinnedBufferPool& pool) : pool_(&pool), data_(pool.acquire()) {}
  ~PinnedBuffer() {
    if (data_ != nullptr) pool_->release(data_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return pool_->buffer_bytes(); }

 private:
  PinnedBufferPool* pool_;
  void* data_;
};

}  // namespace zt::offload
