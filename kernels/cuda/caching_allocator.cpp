#include "kernels/cuda/caching_allocator.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/base/error.h"

namespace zt::cuda {
namespace {

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t segment_size(size_t size, bool small) {
  return small ? CachingAllocator::kSmallSegment : round_up(size, CachingAllocator::kLargeSegmentRound);
}

std::string describe(const CachingAllocatorStats& s) {
  return "allocated " + std::to_string(s.allocated_bytes) + " bytes in " + std::to_string(s.live_blocks) +
         " blocks, reserved " + std::to_string(s.reserved_bytes) + " bytes, peak allocated " +
         std::to_string(s.peak_allocated_bytes) + ", " + std::to_string(s.awaiting_bytes) +
         " bytes in freed blocks waiting for other streams";
}

}  // namespace

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend) : backend_(std::move(backend)) {
  if (!backend_) throw RuntimeError("CachingAllocator: no memory backend given");
}

CachingAllocator::~CachingAllocator() {
  // Every segment is reached from its first block, which is cached, live or waiting for events; live and waiting
  // blocks are handed back with their segment.
  std::set<Block*> heads;
  for (FreeList* list : {&small_free_, &large_free_})
    for (Block* b : *list)
      if (!b->prev) heads.insert(b);
  for (auto& [ptr, b] : live_)
    if (!b->prev) heads.insert(b);
  for (auto& [stream, events] : pending_events_) {
    for (const PendingEvent& pe : events) {
      backend_->release_event(pe.event);
      if (!pe.block->prev) heads.insert(pe.block);
    }
  }
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

void* CachingAllocator::allocate(size_t bytes, StreamHandle stream) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t size = round_up(bytes, kRound);
  const bool small = size <= kSmallRequest;
  stats_.requests++;
  drain_events(false);
  Block* block = take_free_block(size, small, stream);
  if (!block) block = new_segment(size, small, stream);
  // Out of memory: blocks still waiting for other streams may fit once those finish; else give the cache back.
  if (!block && drain_events(true) > 0) block = take_free_block(size, small, stream);
  if (!block && release_cached_locked() > 0) block = new_segment(size, small, stream);
  if (!block) {
    throw RuntimeError("CachingAllocator: out of device memory for a request of " + std::to_string(size) +
                       " bytes (segment of " + std::to_string(segment_size(size, small)) +
                       " bytes): " + describe(stats_));
  }
  split(block, size);
  block->allocated = true;
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  stats_.live_blocks++;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return block->ptr;
}

CachingAllocator::Block* CachingAllocator::take_free_block(size_t size, bool small, StreamHandle stream) {
  FreeList& list = pool(small);
  Block key;
  key.size = size;
  key.stream = stream;
  auto it = list.lower_bound(&key);  // the stream's smallest free block that fits (lowest address among equals)
  if (it == list.end() || (*it)->stream != stream) return nullptr;
  Block* block = *it;
  list.erase(it);
  stats_.cache_hits++;
  return block;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t size, bool small, StreamHandle stream) {
  const size_t segment = segment_size(size, small);
  void* ptr = backend_->allocate(segment);
  if (!ptr) return nullptr;
  stats_.backend_allocations++;
  stats_.reserved_bytes += segment;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  Block* block = new Block;
  block->ptr = static_cast<char*>(ptr);
  block->size = segment;
  block->stream = stream;
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
  rest->stream = block->stream;
  rest->small = block->small;
  rest->prev = block;
  rest->next = block->next;
  if (block->next) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  pool(rest->small).insert(rest);
}

void CachingAllocator::record_stream(void* ptr, StreamHandle stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    throw RuntimeError("CachingAllocator: record_stream on a pointer it did not hand out or already took back");
  }
  Block* block = it->second;
  if (stream == block->stream) return;
  if (std::find(block->used_on.begin(), block->used_on.end(), stream) == block->used_on.end()) {
    block->used_on.push_back(stream);
  }
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    throw RuntimeError("CachingAllocator: free of a pointer it did not hand out or already took back");
  }
  Block* block = it->second;
  // The events first: if recording one fails, the block stays live and nothing else has changed.
  std::vector<EventHandle> events;
  try {
    for (StreamHandle s : block->used_on) events.push_back(backend_->record_event(s));
  } catch (...) {
    for (EventHandle e : events) backend_->release_event(e);
    throw;
  }
  live_.erase(it);
  block->allocated = false;
  stats_.allocated_bytes -= block->size;
  stats_.live_blocks--;
  if (events.empty()) {
    cache_block(block);
    return;
  }
  for (size_t i = 0; i < events.size(); i++) pending_events_[block->used_on[i]].push_back({events[i], block});
  block->pending_events = static_cast<int>(events.size());
  block->used_on.clear();
  stats_.awaiting_blocks++;
  stats_.awaiting_bytes += block->size;
}

void CachingAllocator::cache_block(Block* block) {
  FreeList& list = pool(block->small);
  // Merge with cached neighbours, so a segment whose blocks are all free is one block again.
  if (block->prev && block->prev->cached()) {
    block = block->prev;
    list.erase(block);
    absorb_next(block);
  }
  if (block->next && block->next->cached()) {
    list.erase(block->next);
    absorb_next(block);
  }
  list.insert(block);
}

size_t CachingAllocator::process_events() {
  std::lock_guard<std::mutex> lock(mutex_);
  return drain_events(false);
}

size_t CachingAllocator::drain_events(bool wait) {
  size_t reusable = 0;
  for (auto it = pending_events_.begin(); it != pending_events_.end();) {
    std::deque<PendingEvent>& events = it->second;
    while (!events.empty()) {
      const PendingEvent pe = events.front();
      if (wait) {
        backend_->event_synchronize(pe.event);
      } else if (!backend_->event_done(pe.event)) {
        break;  // the later events of this stream cannot have completed either
      }
      events.pop_front();
      backend_->release_event(pe.event);
      if (--pe.block->pending_events == 0) {
        stats_.awaiting_blocks--;
        stats_.awaiting_bytes -= pe.block->size;
        cache_block(pe.block);
        reusable++;
      }
    }
    it = events.empty() ? pending_events_.erase(it) : std::next(it);
  }
  return reusable;
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
  drain_events(true);
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
