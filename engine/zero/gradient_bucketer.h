#pragma once
// Reduce-scatters unit gradients in buckets of about reduce_bucket_size elements as backward produces them, and
// accumulates this rank's averaged shard of each into its partition gradient buffer. With overlap the collectives
// run (on the process group's communication thread) while backward goes on; finish() waits for them.
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
  // Bytes of staging buffers held (for memory accounting).
  size_t comm_bytes() const;

 private:
  struct Bucket;
  void launch(std::unique_ptr<Bucket> b);
  void complete(Bucket& b, float* part_grads);

  const PartitionMap& map_;
  ProcessGroup& pg_;
  size_t bucket_elems_;
  bool overlap_;
  std::unique_ptr<Bucket> open_;
  std::vector<std::unique_ptr<Bucket>> in_flight_;
  std::vector<std::unique_ptr<Bucket>> done_;  // reduced without overlap, waiting for finish()
  size_t peak_staging_ = 0;
};

// All-gathers every rank's partition (part: partition_numel floats) into the full flat buffer, in buckets of about
// bucket_elems elements of consecutive units.
void allgather_partition(const PartitionMap& map, ProcessGroup& pg, const float* part, float* flat,
                         size_t bucket_elems);

}  // namespace zt
