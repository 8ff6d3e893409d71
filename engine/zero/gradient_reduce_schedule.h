#pragma once
// When the GPU engine (stages 0-2) reduces gradients during backward: units are grouped into buckets of about
// reduce_bucket_size elements in the order backward completes them (as the CPU GradientBucketer fills its buckets),
// a bucket's collective is launched as soon as the last of its units is complete, and every launched bucket is
// completed (its result made usable) at the end of the micro-batch, or right after its launch without overlap_comm,
// or when buckets share a few staging slots (stage 2) as soon as the next bucket of its slot claims it.
// The buffers and collectives are a BucketReducer's; this class only decides the order, in plain C++, so that the
// order is tested on the CPU against a fake.
#include <cstddef>
#include <vector>

#include "engine/zero/partition_map.h"

namespace zt {

class BucketReducer {
 public:
  virtual ~BucketReducer() = default;
  // Every unit of bucket b is complete for this micro-batch: copy it out and start the bucket's collective (may
  // return before the collective is done).
  virtual void launch(size_t bucket) = 0;
  // The bucket's collective must be done before the work that follows (a device-side wait where the backend has one)
  // and its result is used.
  virtual void complete(size_t bucket) = 0;
};

// The units of one bucket, ascending (consecutive unit numbers when the order is), and their total elements.
struct ReduceBucket {
  std::vector<int> units;
  size_t elements = 0;
};

class GradientReduceSchedule {
 public:
  // unit_elements[u]: what unit u adds to a bucket. order: every unit once, in the order backward completes them.
  // A bucket is closed before a unit that would take it past bucket_elements, and when it reaches bucket_elements;
  // a unit larger than that has a bucket of its own. Throws RuntimeError for an order that is not a permutation.
  // staging_slots: how many bucket-sized staging buffers the buckets share (bucket b uses slot b % staging_slots);
  // 0: every bucket has its own.
  GradientReduceSchedule(std::vector<size_t> unit_elements, const std::vector<int>& order, size_t bucket_elements,
                         bool overlap, BucketReducer& reducer, size_t staging_slots = 0);

  const std::vector<ReduceBucket>& buckets() const { return buckets_; }
  size_t bucket_of(int unit) const { return bucket_of_[static_cast<size_t>(unit)]; }
  size_t staging_slots() const { return slots_; }
  size_t slot_of(size_t bucket) const { return bucket % slots_; }

  // Unit's gradient is about to be written into its bucket's staging slot: the bucket that used the slot before in
  // this round is completed first if it is still in flight (its collective reads and writes the slot), so a slot is
  // refilled only after its collective is done. Throws RuntimeError when that bucket is still being filled (units
  // completing out of bucket order) or for an unknown unit.
  void claim_staging(int unit);

  // Unit's gradient is complete for this micro-batch; launches its bucket when this was the bucket's last unit.
  // Throws RuntimeError for an unknown unit or one already complete in this round.
  void unit_ready(int unit);
  // Every unit must have been ready (RuntimeError naming the first missing one otherwise); completes the launched
  // buckets not yet completed, in launch order, and starts a new round.
  void finish();
  // Marks every unit not yet ready as ready, in the order, then finish(): the whole gradient at once.
  void reduce_all();
  // Forgets the round (after an exception); buckets already launched are not completed.
  void abandon();
  bool in_round() const { return ready_count_ > 0; }

 private:
  std::vector<size_t> elements_;
  std::vector<int> order_;
  bool overlap_;
  BucketReducer& reducer_;
  std::vector<ReduceBucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<bool> ready_;
  std::vector<size_t> missing_;  // per bucket: units not yet ready in this round
  std::vector<size_t> launched_;  // launched and not completed, in launch order
  size_t slots_ = 1;
  std::vector<size_t> slot_owner_;  // per slot: the bucket staged there and not completed in this round, or kNone
  static constexpr size_t kNone = static_cast<size_t>(-1);
  void complete_bucket(size_t bucket);
  size_t ready_count_ = 0;
};

// Stages 1-2: one reduce-scatter per bucket needs the bucket's units laid out rank by rank. Bucket b's region of the
// staging buffer starts at base[b] and holds world chunks of chunk[b] elements; chunk r holds shard r of each of the
// bucket's units (zero beyond its numel), unit u at in_chunk[u] within the chunk. The units of a bucket must be
// consecutive, so that the reduced chunk is the partition's range [local_offset of its first unit, + chunk[b]).
// The buckets' elements must be the units' padded sizes. Throws RuntimeError for buckets that break this.
struct BucketStaging {
  std::vector<size_t> base, chunk, in_chunk;
  size_t total = 0;  // elements of the whole staging buffer
};
BucketStaging bucket_staging(const std::vector<ReduceBucket>& buckets, const PartitionMap& map);

// Stage 2 shares a few bucket-sized staging slots among the buckets (bucket b in slot b % slots, each slot as large as
// its largest bucket): region b's base becomes its slot's offset, and total the whole set's elements, at most every
// bucket's.
BucketStaging shared_bucket_staging(const std::vector<ReduceBucket>& buckets, const PartitionMap& map, size_t slots);

// A run of consecutive units [first, end) gathered together through a bounded buffer: unit u's padded slot at
// at[u - first] within the run's region, padded elements in all.
struct GatherChunk {
  size_t first = 0, end = 0, padded = 0;
  std::vector<size_t> at;
};
// Consecutive units, greedily as many as fit in capacity padded elements; throws RuntimeError naming a unit that
// alone does not fit.
std::vector<GatherChunk> plan_gather_chunks(const PartitionMap& map, size_t capacity);

}  // namespace zt
