#include "engine/zero/cuda/swapped_shard_uploads.h"

#include <algorithm>

namespace zt {

SwappedShardUploads::SwappedShardUploads(ParamSwapper& swapper, UploadEvents& uploads, size_t units)
    : swapper_(swapper), uploads_(uploads), pinned_(units, false) {}

const void* SwappedShardUploads::take(int unit) {
  // Finished uploads first (no wait), then the oldest until the unit finds a buffer.
  for (size_t i = 0; i < order_.size();) {
    const int u = order_[i];
    if (u != unit && uploads_.done(u)) {
      release(u);
    } else {
      ++i;
    }
  }
  while (!swapper_.can_acquire(unit) && !order_.empty() && order_.front() != unit) release(order_.front());
  if (pinned_[static_cast<size_t>(unit)]) release(unit);  // a unit taken again: its earlier upload comes first
  const void* shard = swapper_.acquire(unit);
  pinned_[static_cast<size_t>(unit)] = true;
  order_.push_back(unit);
  return shard;
}

void SwappedShardUploads::release(int unit) {
  if (!pinned_[static_cast<size_t>(unit)]) return;
  uploads_.wait(unit);
  swapper_.unpin(unit);
  pinned_[static_cast<size_t>(unit)] = false;
  order_.erase(std::find(order_.begin(), order_.end(), unit));
}

void SwappedShardUploads::release_all() {
  while (!order_.empty()) release(order_.front());
}

}  // namespace zt
