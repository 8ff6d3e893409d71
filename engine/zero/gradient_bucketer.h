#pragma once
// Reduce-scatters unit gradients in buckets of about reduce_bucket_size elements as backward produces them, and
// accumulates this rank's averaged shard of each into its partition gradient buffer. With overlap the collectives
// run (on the process group's communication thread) while backward goes on; finish() waits for them.
// Bucket buffers are allocated once and reused every step: on CPU, freshly mapped memory costs a page fault per
// 4 KiB, which at model size dominates a step.
#include <cstddef>
#include <memory>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/zero/partition_map.h"

namespace zt {

class GradientBucketer {
 public:
  GradientBucketer(const PartitionMap& map, ProcessGroup& pg, size_t bucket_elems, bool overlap);
  ~GradientBucketer();

  // Unit u's gradient (map.units()[u].numel contiguous floats) is complete for this micro-batch. It is copied
  // out at once, so the caller may reuse grad as soon as this returns.
  void add_unit(int unit, const float* grad);
  // Reduces what is still buffered, waits for every collective and adds each result into part_grads (+=).
  void finish(float* part_grads);
  // Bytes of bucket buffers held (for memory accounting).
  size_t comm_bytes() const;

 private:
  struct Bucket {
    std::vector<int> units;
    size_t capacity = 0;         // per-rank chunk capacity of staging
    size_t fill = 0;             // per-rank chunk filled so far
    std::vector<float> staging;  // world_size chunks of `capacity`, compacted to `fill` at launch
    std::vector<float> out;      // this rank's reduced chunk
    std::shared_ptr<Work> work;
  };
  Bucket& open_bucket(size_t need);
  void launch();
  void complete(Bucket& b, float* part_grads);

  const PartitionMap& map_;
  ProcessGroup& pg_;
  size_t chunk_capacity_;  // per-rank elements of a bucket
  bool overlap_;
  std::vector<std::unique_ptr<Bucket>> buckets_;  // reused across steps
  size_t used_ = 0;                               // buckets_[0, used_) belong to the current micro-batch
  bool open_ = false;                             // buckets_[used_ - 1] is still filling
};

// All-gathers every rank's partition (part: partition_numel floats) into the full flat buffer, in buckets of about
// bucket_elems elements of consecutive units. scratch is reused between calls.
void allgather_partition(const PartitionMap& map, ProcessGroup& pg, const float* part, float* flat,
                         size_t bucket_elems, std::vector<float>& scratch);
// The same, with each rank's partition taken from its own shards in flat (the rank's elements of the model's flat
// layout, padding sent as zeros) instead of a partition buffer.
void allgather_own_shards(const PartitionMap& map, ProcessGroup& pg, float* flat, size_t bucket_elems,
                          std::vector<float>& scratch);

}  // namespace zt
