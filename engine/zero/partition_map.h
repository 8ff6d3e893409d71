#pragma once
// Where every parameter element lives across ranks. Each layer unit's flat range is padded to a multiple of
// world_size * kAlign and split into world_size equal shards; rank r owns shard r of every unit. One rank's
// partition is the concatenation of its shards, unit by unit. Per-unit shards make stage 3's gather of one unit a
// single allgather, and stage 2's reduce-scatter of one unit's gradients a single collective as backward produces
// them. Checkpointing and zero_to_fp32 read this same map (it is written into the checkpoint manifest).
#include <cstddef>
#include <string>
#include <vector>

#include "engine/model/gpt2.h"
#include "engine/model/initial_weights.h"
#include "engine/optim/optimizer.h"

namespace zt {

struct UnitShard {
  size_t flat_offset = 0;   // the unit's first element in the model's flat layout
  size_t numel = 0;         // the unit's real elements
  size_t padded = 0;        // numel rounded up to world_size * kAlign
  size_t shard = 0;         // padded / world_size: elements each rank owns of this unit
  size_t local_offset = 0;  // where this unit's shard starts in every rank's partition buffer
};

// One parameter's elements that a given rank owns: flat [flat_begin, flat_end) == partition
// [local_begin, local_begin + (flat_end - flat_begin)).
struct OwnedSlice {
  size_t flat_begin = 0, flat_end = 0, local_begin = 0;
};

class PartitionMap {
 public:
  static constexpr size_t kAlign = 16;  // elements: 64-byte aligned fp32 shards

  PartitionMap(const GPT2& model, int world_size);
  // From the units' flat ranges alone (a checkpoint manifest), without a model.
  PartitionMap(const std::vector<UnitRange>& units, int world_size);

  int world_size() const { return world_size_; }
  size_t num_params() const { return num_params_; }
  size_t partition_numel() const { return partition_numel_; }  // same on every rank
  const std::vector<UnitShard>& units() const { return units_; }

  // The flat range [begin, end) of unit u's shard owned by rank r, clipped to real elements (may be empty).
  std::pair<size_t, size_t> owned_flat_range(int unit, int rank) const;
  // Parameter p's elements owned by rank r (empty when it owns none).
  OwnedSlice owned_slice(const ParamInfo& p, int rank) const;
  // Weight-decay flags over rank r's partition buffer (padding: no decay).
  std::vector<DecayRange> decay_ranges(const std::vector<ParamInfo>& params, int rank) const;

  // Copies between the full flat layout and rank r's partition layout (padding is zero-filled on the way in).
  void flat_to_partition(const float* flat, float* part, int rank) const;
  // The same, reading the flat weights unit shard by unit shard (no full-size copy of them exists).
  void flat_to_partition(const InitialWeights& flat, float* part, int rank) const;
  void partition_to_flat(const float* part, float* flat, int rank) const;
  // The same for partition elements [begin, begin + len) only; part points at element begin. Padding is skipped.
  void partition_range_to_flat(const float* part, size_t begin, size_t len, float* flat, int rank) const;

 private:
  int world_size_;
  size_t num_params_ = 0;
  size_t partition_numel_ = 0;
  std::vector<UnitShard> units_;
};

}  // namespace zt
