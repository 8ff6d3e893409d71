#include "kernels/cuda/caching_allocator.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/base/error.h"

namespace zt::cuda {
namespace {

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

std::string describe(const CachingAllocatorStats& s) {
  return "allocated " + std::to_string(s.allocated_bytes) + " bytes in " + std::to_string(s.live_blocks) +
         " blocks, reserved " + std::to_string(s.reserved_bytes) + " bytes, peak allocated " +
         std::to_string(s.peak_allocated_bytes);
}

}  // namespace

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend) : backend_(std::move(backend)) {
  if (!backend_) throw RuntimeError("CachingAllocator: no memory backend given");
}

CachingAllocator::~CachingAllocator() {
  // Every segment is reached from its first block; live blocks are handed back with their segment.
  std::vector<Block*> heads;
  for (FreeList* list : {&small_free_, &large_free_})
    for (Block* b : *list)
      if (!b->prev) heads.push_back(b);
  for (auto& [ptr, b] : live_)
    if (!b->prev) heads.push_back(b);
  for (Block* head : heads) {
    size_t segment = 0;
    Block* b = head;
    while (b) {
      segment += b->size;
      Block* next = b->next;
      if (b != head) delete b;
      b = next;
    }
    backend_->deallocate(head->ptr, segment);
    delete head;
  }
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t size = round_up(bytes, kRound);
  const bool small = size <= kSmallRequest;
  stats_.requests++;
  Block* block = take_free_block(size, small);
  if (block) {
    stats_.cache_hits++;
  } else {
    block = new_segment(size, small);
  }
  split(block, size);
  block->allocated = true;
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  stats_.live_blocks++;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return block->ptr;
}

CachingAllocator::Block* CachingAllocator::take_free_block(size_t size, bool small) {
  FreeList& list = pool(small);
  Block key;
  key.size = size;
  auto it = list.lower_bound(&key);  // the smallest free block that fits (lowest address among equal sizes)
  if (it == list.end()) return nullptr;
  Block* block = *it;
  list.erase(it);
  return block;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t size, bool small) {
  const size_t segment = small ? kSmallSegment : round_up(size, kLargeSegmentRound);
  void* ptr = backend_->allocate(segment);
  if (!ptr && release_cached_locked() > 0) ptr = backend_->allocate(segment);
  if (!ptr) {
    throw RuntimeError("CachingAllocator: out of device memory for a request of " + std::to_string(size) +
                       " bytes (segment of " + std::to_string(segment) + " bytes): " + describe(stats_));
  }
  stats_.backend_allocations++;
  stats_.reserved_bytes += segment;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  Block* block = new Block;
  block->ptr = static_cast<char*>(ptr);
  block->size = segment;
  block->small = small;
  return block;
}

// Cuts the tail beyond `size` off into a free block when it is worth keeping: any remainder in the small pool, and
// in the large pool only one too big for a small request (smaller tails stay with the block, as rounding).
void CachingAllocator::split(Block* block, size_t size) {
  const size_t remainder = block->size - size;
  const bool worth = block->small ? remainder >= kRound : remainder > kSmallRequest;
  if (!worth) return;
  Block* rest = new Block;
  rest->ptr = block->ptr + size;
  rest->size = remainder;
  rest->small = block->small;
  rest->prev = block;
  rest->next = block->next;
  if (block->next) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  pool(rest->small).insert(rest);
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    throw RuntimeError("CachingAllocator: free of a pointer it did not hand out or already took back");
  }
  Block* block = it->second;
  live_.erase(it);
  block->allocated = false;
  stats_.allocated_bytes -= block->size;
  stats_.live_blocks--;
  FreeList& list = pool(block->small);
  // Merge with free neighbours, so a segment whose blocks are all free is one block again.
  if (block->prev && !block->prev->allocated) {
    block = block->prev;
    list.erase(block);
    absorb_next(block);
  }
  if (block->next && !block->next->allocated) {
    list.erase(block->next);
    absorb_next(block);
  }
  list.insert(block);
}

void CachingAllocator::absorb_next(Block* block) {
  Block* next = block->next;
  block->size += next->size;
  block->next = next->next;
  if (next->next) next->next->prev = block;
  delete next;
}

size_t CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  return release_cached_locked();
}

size_t CachingAllocator::release_cached_locked() {
  size_t released = 0;
  for (FreeList* list : {&small_free_, &large_free_}) {
    for (auto it = list->begin(); it != list->end();) {
      Block* b = *it;
      if (b->prev || b->next) {  // part of a segment that still has a live block
        ++it;
        continue;
      }
      it = list->erase(it);
      backend_->deallocate(b->ptr, b->size);
      stats_.backend_frees++;
      stats_.reserved_bytes -= b->size;
      released += b->size;
      delete b;
    }
  }
  return released;
}

CachingAllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peaks() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

}  // namespace zt::cuda
