// Page-aligned, page-locked (best effort) host buffers, allocated at construction only.
#include "offload/pinned_buffer_pool.h"

#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "offload/io_file.h"

namespace zt::offload {
namespace {

void* default_allocate(size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, kIoAlignment, bytes) == 0 ? p : nullptr;
}
void default_release(void* p, size_t bytes) {
  ::munlock(p, bytes);  // harmless when it was never locked
  std::free(p);
}

std::mutex& allocator_mutex() {
  static std::mutex mu;
  return mu;
}
HostAllocator& current_allocator() {
  static HostAllocator a{default_allocate, default_release, false};
  return a;
}

}  // namespace

void set_host_allocator(const HostAllocator& allocator) {
  std::lock_guard<std::mutex> lock(allocator_mutex());
  if (allocator.allocate == nullptr || allocator.release == nullptr) {
    current_allocator() = HostAllocator{default_allocate, default_release, false};
  } else {
    current_allocator() = allocator;
  }
}

HostAllocator host_allocator() {
  std::lock_guard<std::mutex> lock(allocator_mutex());
  return current_allocator();
}

PinnedBufferPool::PinnedBufferPool(size_t count, size_t bytes_each, bool pin)
    : bytes_each_(io_padded_size(bytes_each)), allocator_(host_allocator()) {
  if (count == 0 || bytes_each == 0) {
    throw RuntimeError("pinned buffer pool: count and size must be positive (got " + std::to_string(count) +
                       " x " + std::to_string(bytes_each) + " bytes)");
  }
  locked_ = allocator_.pinned;
  bool lock_ok = pin && !allocator_.pinned;
  for (size_t i = 0; i < count; i++) {
    void* p = allocator_.allocate(bytes_each_);
    if (p == nullptr) {
      for (void* q : buffers_) allocator_.release(q, bytes_each_);
      throw RuntimeError("pinned buffer pool: cannot allocate buffer " + std::to_string(i) + " of " +
                         std::to_string(count) + " (" + std::to_string(bytes_each_) + " bytes each)");
    }
    std::memset(p, 0, bytes_each_);  // touch every page now, not on the first transfer
    if (lock_ok && ::mlock(p, bytes_each_) != 0) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        spdlog::warn("pinned buffer pool: mlock of {} bytes failed ({}); buffers stay pageable", bytes_each_,
                     std::strerror(errno));
      }
      lock_ok = false;
    }
    buffers_.push_back(p);
  }
  if (pin && !allocator_.pinned) locked_ = lock_ok;
  in_use_.assign(count, false);
  for (size_t i = count; i-- > 0;) free_.push_back(i);
}

PinnedBufferPool::~PinnedBufferPool() {
  for (void* p : buffers_) allocator_.release(p, bytes_each_);
}

void* PinnedBufferPool::try_acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return nullptr;
  size_t i = free_.back();
  free_.pop_back();
  in_use_[i] = true;
  return buffers_[i];
}

void* PinnedBufferPool::acquire() {
  void* p = try_acquire();
  if (p == nullptr) {
    throw RuntimeError("pinned buffer pool: all " + std::to_string(buffers_.size()) + " buffers of " +
                       std::to_string(bytes_each_) + " bytes are in use (raise buffer_count)");
  }
  return p;
}

void PinnedBufferPool::release(void* buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < buffers_.size(); i++) {
    if (buffers_[i] != buffer) continue;
    if (!in_use_[i]) throw RuntimeError("pinned buffer pool: buffer " + std::to_string(i) + " released twice");
    in_use_[i] = false;
    free_.push_back(i);
    return;
  }
  throw RuntimeError("pinned buffer pool: release of a pointer that is not one of its buffers");
}

size_t PinnedBufferPool::free_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size();
}

}  // namespace zt::offload
