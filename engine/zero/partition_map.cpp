#include "engine/zero/partition_map.h"

#include <algorithm>
#include <cstring>

#include "engine/base/error.h"

namespace zt {

namespace {
std::vector<UnitRange> unit_ranges(const GPT2& model) {
  std::vector<UnitRange> r;
  for (int u = 0; u < model.num_units(); ++u) r.push_back(model.unit_range(u));
  return r;
}
}  // namespace

PartitionMap::PartitionMap(const GPT2& model, int world_size) : PartitionMap(unit_ranges(model), world_size) {}

PartitionMap::PartitionMap(const std::vector<UnitRange>& ranges, int world_size) : world_size_(world_size) {
  if (world_size < 1) throw RuntimeError("PartitionMap: world size must be >= 1, got " + std::to_string(world_size));
  const size_t quantum = static_cast<size_t>(world_size) * kAlign;
  size_t local = 0;
  for (const UnitRange& r : ranges) {
    num_params_ = std::max(num_params_, r.offset + r.numel);
    UnitShard s;
    s.flat_offset = r.offset;
    s.numel = r.numel;
    s.padded = (r.numel + quantum - 1) / quantum * quantum;
    s.shard = s.padded / static_cast<size_t>(world_size);
    s.local_offset = local;
    local += s.shard;
    units_.push_back(s);
  }
  partition_numel_ = local;
}

std::pair<size_t, size_t> PartitionMap::owned_flat_range(int unit, int rank) const {
  const UnitShard& s = units_.at(static_cast<size_t>(unit));
  size_t begin = std::min(s.numel, static_cast<size_t>(rank) * s.shard);
  size_t end = std::min(s.numel, begin + s.shard);
  return {s.flat_offset + begin, s.flat_offset + end};
}

OwnedSlice PartitionMap::owned_slice(const ParamInfo& p, int rank) const {
  const UnitShard& s = units_.at(static_cast<size_t>(p.unit));
  auto [ob, oe] = owned_flat_range(p.unit, rank);
  OwnedSlice o;
  o.flat_begin = std::max(ob, p.offset);
  o.flat_end = std::min(oe, p.offset + p.numel);
  if (o.flat_end <= o.flat_begin) return OwnedSlice{};
  o.local_begin = s.local_offset + (o.flat_begin - ob);
  return o;
}

std::vector<DecayRange> PartitionMap::decay_ranges(const std::vector<ParamInfo>& params, int rank) const {
  std::vector<DecayRange> out;
  for (const ParamInfo& p : params) {
    OwnedSlice o = owned_slice(p, rank);
    if (o.flat_end == o.flat_begin) continue;
    out.push_back({o.local_begin, o.local_begin + (o.flat_end - o.flat_begin), p.weight_decay});
  }
  std::sort(out.begin(), out.end(), [](const DecayRange& a, const DecayRange& b) { return a.begin < b.begin; });
  // Padding gaps become explicit no-decay ranges so the ranges tile the partition.
  std::vector<DecayRange> tiled;
  size_t at = 0;
  for (const DecayRange& r : out) {
    if (r.begin > at) tiled.push_back({at, r.begin, false});
    tiled.push_back(r);
    at = r.end;
  }
  if (at < partition_numel_) tiled.push_back({at, partition_numel_, false});
  return tiled;
}

void PartitionMap::flat_to_partition(const float* flat, float* part, int rank) const {
  for (size_t u = 0; u < units_.size(); ++u) {
    const UnitShard& s = units_[u];
    auto [b, e] = owned_flat_range(static_cast<int>(u), rank);
    float* dst = part + s.local_offset;
    std::memcpy(dst, flat + b, (e - b) * sizeof(float));
    std::fill(dst + (e - b), dst + s.shard, 0.0f);
  }
}

void PartitionMap::flat_to_partition(const InitialWeights& flat, float* part, int rank) const {
  for (size_t u = 0; u < units_.size(); ++u) {
    const UnitShard& s = units_[u];
    auto [b, e] = owned_flat_range(static_cast<int>(u), rank);
    float* dst = part + s.local_offset;
    flat.read(b, e - b, dst);
    std::fill(dst + (e - b), dst + s.shard, 0.0f);
  }
}

void PartitionMap::partition_to_flat(const float* part, float* flat, int rank) const {
  for (size_t u = 0; u < units_.size(); ++u) {
    const UnitShard& s = units_[u];
    auto [b, e] = owned_flat_range(static_cast<int>(u), rank);
    std::memcpy(flat + b, part + s.local_offset, (e - b) * sizeof(float));
  }
}

void PartitionMap::partition_range_to_flat(const float* part, size_t begin, size_t len, float* flat,
                                          int rank) const {
  const size_t end = begin + len;
  for (size_t u = 0; u < units_.size(); ++u) {
    const UnitShard& s = units_[u];
    auto [b, e] = owned_flat_range(static_cast<int>(u), rank);
    // The unit's real elements in the partition: [local_offset, local_offset + e - b).
    const size_t lo = std::max(begin, s.local_offset), hi = std::min(end, s.local_offset + (e - b));
    if (lo < hi) std::memcpy(flat + b + (lo - s.local_offset), part + (lo - begin), (hi - lo) * sizeof(float));
  }
}

}  // namespace zt
