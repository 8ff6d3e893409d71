#include "engine/zero/unit_buffer_pool.h"

#include <algorithm>
#include <cstring>

#include "engine/base/error.h"

namespace zt {

float* UnitBufferPool::acquire(size_t n, bool zero) {
  Slot* best = nullptr;
  for (Slot& s : slots_)
    if (!s.used && s.capacity >= n && (!best || s.capacity < best->capacity)) best = &s;
  if (!best) {
    slots_.push_back(Slot{std::unique_ptr<float[]>(new float[std::max<size_t>(n, 1)]), n, false});
    best = &slots_.back();
  }
  best->used = true;
  in_use_bytes_ += best->capacity * sizeof(float);
  peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
  if (zero) std::memset(best->data.get(), 0, n * sizeof(float));
  return best->data.get();
}

void UnitBufferPool::release(float* p) {
  for (Slot& s : slots_) {
    if (s.data.get() == p) {
      if (!s.used) throw RuntimeError("UnitBufferPool: buffer released twice");
      s.used = false;
      in_use_bytes_ -= s.capacity * sizeof(float);
      return;
    }
  }
  throw RuntimeError("UnitBufferPool: release of a buffer the pool does not own");
}

size_t UnitBufferPool::bytes_held() const {
  size_t b = 0;
  for (const Slot& s : slots_) b += s.capacity * sizeof(float);
  return b;
}

}  // namespace zt
