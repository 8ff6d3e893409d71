#include "engine/zero/gradient_bucketer.h"

#include <algorithm>
#include <cstring>

namespace zt {

GradientBucketer::GradientBucketer(const PartitionMap& map, ProcessGroup& pg, size_t bucket_elems, bool overlap)
    : map_(map),
      pg_(pg),
      // A bucket never needs to hold more than the whole partition.
      chunk_capacity_(std::max<size_t>(
          1, std::min(bucket_elems / static_cast<size_t>(map.world_size()), map.partition_numel()))),
      overlap_(overlap) {}

GradientBucketer::~GradientBucketer() {
  // A bucket still in flight (an exception unwound the step) must finish before its buffers go.
  for (auto& b : buckets_) {
    if (!b->work) continue;
    try {
      b->work->wait();
    } catch (...) {
    }
  }
}

GradientBucketer::Bucket& GradientBucketer::open_bucket(size_t need) {
  if (open_ && buckets_[used_ - 1]->fill + need > buckets_[used_ - 1]->capacity) launch();
  if (!open_) {
    if (used_ == buckets_.size()) buckets_.push_back(std::make_unique<Bucket>());
    Bucket& b = *buckets_[used_++];
    b.units.clear();
    b.fill = 0;
    b.work.reset();
    open_ = true;
  }
  Bucket& b = *buckets_[used_ - 1];
  const size_t cap = std::max(chunk_capacity_, need);  // a unit larger than a bucket gets a bucket of its own size
  if (b.capacity < cap) {
    b.capacity = cap;
    b.staging.resize(cap * static_cast<size_t>(map_.world_size()));
  }
  return b;
}

void GradientBucketer::add_unit(int unit, const float* grad) {
  const UnitShard& s = map_.units()[static_cast<size_t>(unit)];
  Bucket& b = open_bucket(s.shard);
  // Rank r's chunk collects shard r of every unit in the bucket, zero-padded to the shard size.
  for (size_t r = 0; r < static_cast<size_t>(map_.world_size()); ++r) {
    float* dst = b.staging.data() + r * b.capacity + b.fill;
    const size_t begin = std::min(s.numel, r * s.shard), end = std::min(s.numel, begin + s.shard);
    std::memcpy(dst, grad + begin, (end - begin) * sizeof(float));
    std::fill(dst + (end - begin), dst + s.shard, 0.0f);
  }
  b.fill += s.shard;
  b.units.push_back(unit);
  if (b.fill >= b.capacity) launch();
}

void GradientBucketer::launch() {
  Bucket& b = *buckets_[used_ - 1];
  open_ = false;
  // The reduce-scatter wants the chunks back to back: close the gaps of a bucket that is not full.
  if (b.fill < b.capacity)
    for (size_t r = 1; r < static_cast<size_t>(map_.world_size()); ++r)
      std::memmove(b.staging.data() + r * b.fill, b.staging.data() + r * b.capacity, b.fill * sizeof(float));
  if (b.out.size() < b.fill) b.out.resize(b.fill);
  b.work = pg_.reduce_scatter_async(b.staging.data(), b.out.data(), b.fill, DType::F32, ReduceOp::Avg);
  if (!overlap_) b.work->wait();
}

void GradientBucketer::complete(Bucket& b, float* part_grads) {
  if (b.work) b.work->wait();
  b.work.reset();
  size_t at = 0;
  for (int u : b.units) {
    const UnitShard& s = map_.units()[static_cast<size_t>(u)];
    float* dst = part_grads + s.local_offset;
    const float* src = b.out.data() + at;
    for (size_t i = 0; i < s.shard; ++i) dst[i] += src[i];
    at += s.shard;
  }
}

void GradientBucketer::finish(float* part_grads) {
  if (open_) launch();
  for (size_t i = 0; i < used_; ++i) complete(*buckets_[i], part_grads);
  used_ = 0;
}

size_t GradientBucketer::comm_bytes() const {
  size_t bytes = 0;
  for (const auto& b : buckets_) bytes += (b->staging.capacity() + b->out.capacity()) * sizeof(float);
  return bytes;
}

namespace {

// The bucketed all-gather of every rank's partition into the flat layout. send(u0, u1, chunk) gives this rank's
// shards of units [u0, u1) (chunk elements) back to back; it may use scratch from index world * chunk on.
template <class Send>
void allgather_shards(const PartitionMap& map, ProcessGroup& pg, float* flat, size_t bucket_elems,
                      std::vector<float>& scratch, size_t extra, Send send) {
  const auto& units = map.units();
  const size_t world = static_cast<size_t>(map.world_size());
  size_t u0 = 0;
  while (u0 < units.size()) {
    // Consecutive units are consecutive in every partition, so one allgather moves them all.
    size_t u1 = u0, chunk = 0;
    do {
      chunk += units[u1].shard;
      ++u1;
    } while (u1 < units.size() && (chunk + units[u1].shard) * world <= bucket_elems);
    if (scratch.size() < chunk * (world + extra)) scratch.resize(chunk * (world + extra));
    pg.allgather(send(u0, u1, chunk), scratch.data(), chunk, DType::F32);
    for (size_t r = 0; r < world; ++r) {
      const float* src = scratch.data() + r * chunk;
      for (size_t u = u0; u < u1; ++u) {
        const UnitShard& s = units[u];
        const size_t begin = std::min(s.numel, r * s.shard), end = std::min(s.numel, begin + s.shard);
        std::memcpy(flat + s.flat_offset + begin, src, (end - begin) * sizeof(float));
        src += s.shard;
      }
    }
    u0 = u1;
  }
}

}  // namespace

void allgather_partition(const PartitionMap& map, ProcessGroup& pg, const float* part, float* flat,
                         size_t bucket_elems, std::vector<float>& scratch) {
  allgather_shards(map, pg, flat, bucket_elems, scratch, 0,
                   [&](size_t u0, size_t, size_t) { return part + map.units()[u0].local_offset; });
}

void allgather_own_shards(const PartitionMap& map, ProcessGroup& pg, float* flat, size_t bucket_elems,
                          std::vector<float>& scratch) {
  const size_t world = static_cast<size_t>(map.world_size());
  allgather_shards(map, pg, flat, bucket_elems, scratch, 1, [&](size_t u0, size_t u1, size_t chunk) {
    // The send buffer follows the receive area, so neither overlaps the other.
    float* send = scratch.data() + world * chunk;
    for (size_t u = u0; u < u1; ++u) {
      const UnitShard& s = map.units()[u];
      const auto [b, e] = map.owned_flat_range(static_cast<int>(u), pg.rank());
      std::memcpy(send, flat + b, (e - b) * sizeof(float));
      std::fill(send + (e - b), send + s.shard, 0.0f);
      send += s.shard;
    }
    return scratch.data() + world * chunk;
  });
}

}  // namespace zt
