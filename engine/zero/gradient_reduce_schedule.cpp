#include "engine/zero/gradient_reduce_schedule.h"

#include <algorithm>
#include <string>
#include <utility>

#include "engine/base/error.h"

namespace zt {

GradientReduceSchedule::GradientReduceSchedule(std::vector<size_t> unit_elements, const std::vector<int>& order,
                                               size_t bucket_elements, bool overlap, BucketReducer& reducer,
                                               size_t staging_slots)
    : elements_(std::move(unit_elements)),
      order_(order),
      overlap_(overlap),
      reducer_(reducer),
      bucket_of_(elements_.size(), 0),
      ready_(elements_.size(), false) {
  std::vector<bool> seen(elements_.size(), false);
  if (order_.size() != elements_.size())
    throw RuntimeError("gradient reduce schedule: the backward order names " + std::to_string(order_.size()) +
                       " units, the model has " + std::to_string(elements_.size()));
  const size_t cap = std::max<size_t>(bucket_elements, 1);
  bool open = false;
  for (int u : order_) {
    if (u < 0 || static_cast<size_t>(u) >= elements_.size() || seen[static_cast<size_t>(u)])
      throw RuntimeError("gradient reduce schedule: unit " + std::to_string(u) +
                         " is unknown or twice in the backward order");
    seen[static_cast<size_t>(u)] = true;
    const size_t e = elements_[static_cast<size_t>(u)];
    if (open && buckets_.back().elements + e > cap) open = false;
    if (!open) {
      buckets_.emplace_back();
      open = true;
    }
    ReduceBucket& b = buckets_.back();
    b.units.push_back(u);
    b.elements += e;
    bucket_of_[static_cast<size_t>(u)] = buckets_.size() - 1;
    if (b.elements >= cap) open = false;
  }
  for (ReduceBucket& b : buckets_) std::sort(b.units.begin(), b.units.end());
  missing_.resize(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) missing_[i] = buckets_[i].units.size();
  const size_t n_buckets = std::max<size_t>(buckets_.size(), 1);
  slots_ = staging_slots == 0 ? n_buckets : std::min(staging_slots, n_buckets);
  slot_owner_.assign(slots_, kNone);
}

void GradientReduceSchedule::complete_bucket(size_t bucket) {
  size_t& owner = slot_owner_[slot_of(bucket)];
  if (owner == bucket) owner = kNone;
  reducer_.complete(bucket);
}

void GradientReduceSchedule::claim_staging(int unit) {
  if (unit < 0 || static_cast<size_t>(unit) >= elements_.size())
    throw RuntimeError("gradient reduce schedule: no unit " + std::to_string(unit));
  const size_t b = bucket_of_[static_cast<size_t>(unit)];
  size_t& owner = slot_owner_[slot_of(b)];
  if (owner == b) return;
  if (owner != kNone) {
    const auto in_flight = std::find(launched_.begin(), launched_.end(), owner);
    if (in_flight == launched_.end())
      throw RuntimeError("gradient reduce schedule: unit " + std::to_string(unit) + " of bucket " + std::to_string(b) +
                         " needs staging slot " + std::to_string(slot_of(b)) + ", which bucket " +
                         std::to_string(owner) + " is still filling (units completed out of bucket order)");
    const size_t previous = owner;
    launched_.erase(in_flight);
    complete_bucket(previous);
  }
  owner = b;
}

void GradientReduceSchedule::unit_ready(int unit) {
  if (unit < 0 || static_cast<size_t>(unit) >= elements_.size())
    throw RuntimeError("gradient reduce schedule: no unit " + std::to_string(unit));
  const size_t u = static_cast<size_t>(unit);
  if (ready_[u])
    throw RuntimeError("gradient reduce schedule: unit " + std::to_string(unit) +
                       " completed twice in one micro-batch");
  ready_[u] = true;
  ++ready_count_;
  const size_t b = bucket_of_[u];
  if (--missing_[b] > 0) return;
  reducer_.launch(b);
  if (overlap_) {
    launched_.push_back(b);
  } else {
    complete_bucket(b);
  }
}

void GradientReduceSchedule::finish() {
  for (int u : order_)
    if (!ready_[static_cast<size_t>(u)])
      throw RuntimeError("gradient reduce schedule: unit " + std::to_string(u) +
                         " never completed its backward in this micro-batch");
  std::vector<size_t> launched;
  launched.swap(launched_);
  abandon();  // the new round starts even if a completion throws
  for (size_t b : launched) reducer_.complete(b);  // slot owners were cleared by abandon()
}

void GradientReduceSchedule::reduce_all() {
  for (int u : order_)
    if (!ready_[static_cast<size_t>(u)]) unit_ready(u);
  finish();
}

void GradientReduceSchedule::abandon() {
  std::fill(ready_.begin(), ready_.end(), false);
  for (size_t i = 0; i < buckets_.size(); ++i) missing_[i] = buckets_[i].units.size();
  launched_.clear();
  std::fill(slot_owner_.begin(), slot_owner_.end(), kNone);
  ready_count_ = 0;
}

BucketStaging bucket_staging(const std::vector<ReduceBucket>& buckets, const PartitionMap& map) {
  const std::vector<UnitShard>& units = map.units();
  const size_t world = static_cast<size_t>(map.world_size());
  BucketStaging s;
  s.in_chunk.assign(units.size(), 0);
  for (size_t b = 0; b < buckets.size(); ++b) {
    size_t chunk = 0, padded = 0;
    for (size_t i = 0; i < buckets[b].units.size(); ++i) {
      const int u = buckets[b].units[i];
      if (u < 0 || static_cast<size_t>(u) >= units.size() || (i > 0 && u != buckets[b].units[i - 1] + 1))
        throw RuntimeError("bucket staging: bucket " + std::to_string(b) + " is not a run of consecutive units");
      s.in_chunk[static_cast<size_t>(u)] = chunk;
      chunk += units[static_cast<size_t>(u)].shard;
      padded += units[static_cast<size_t>(u)].padded;
    }
    if (padded != buckets[b].elements || chunk * world != padded)
      throw RuntimeError("bucket staging: bucket " + std::to_string(b) + " has " +
                         std::to_string(buckets[b].elements) + " elements, its units " + std::to_string(padded) +
                         " padded");
    s.base.push_back(s.total);
    s.chunk.push_back(chunk);
    s.total += padded;
  }
  return s;
}

BucketStaging shared_bucket_staging(const std::vector<ReduceBucket>& buckets, const PartitionMap& map, size_t slots) {
  if (slots == 0) throw RuntimeError("bucket staging: no staging slots for " + std::to_string(buckets.size()) +
                                     " buckets");
  BucketStaging s = bucket_staging(buckets, map);
  // Each slot as large as its largest bucket, so the set never exceeds every bucket padded.
  std::vector<size_t> slot_elements(slots, 0), slot_base(slots, 0);
  for (size_t b = 0; b < buckets.size(); ++b)
    slot_elements[b % slots] = std::max(slot_elements[b % slots], buckets[b].elements);
  s.total = 0;
  for (size_t k = 0; k < slots; ++k) {
    slot_base[k] = s.total;
    s.total += slot_elements[k];
  }
  for (size_t b = 0; b < buckets.size(); ++b) s.base[b] = slot_base[b % slots];
  return s;
}

std::vector<GatherChunk> plan_gather_chunks(const PartitionMap& map, size_t capacity) {
  const std::vector<UnitShard>& units = map.units();
  std::vector<GatherChunk> chunks;
  for (size_t u = 0; u < units.size(); ++u) {
    const size_t padded = units[u].padded;
    if (padded > capacity)
      throw RuntimeError("gather chunks: unit " + std::to_string(u) + " has " + std::to_string(padded) +
                         " padded elements, more than the gather buffer's " + std::to_string(capacity));
    if (chunks.empty() || chunks.back().padded + padded > capacity) {
      chunks.emplace_back();
      chunks.back().first = u;
    }
    GatherChunk& c = chunks.back();
    c.at.push_back(c.padded);
    c.padded += padded;
    c.end = u + 1;
  }
  return chunks;
}

}  // namespace zt
