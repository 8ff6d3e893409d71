#include "engine/zero/gradient_bucketer.h"

#include <algorithm>
#include <cstring>

namespace zt {

struct GradientBucketer::Bucket {
  std::vector<int> units;
  size_t shard_elems = 0;      // sum of the units' shards: one rank's chunk
  std::vector<std::vector<float>> chunks;  // per rank: the units' shards in bucket order, while the bucket fills
  std::vector<float> staging;              // the chunks back to back: the reduce-scatter's input
  std::vector<float> out;      // this rank's reduced chunk
  std::shared_ptr<Work> work;
};

GradientBucketer::GradientBucketer(const PartitionMap& map, ProcessGroup& pg, size_t bucket_elems, bool overlap)
    : map_(map), pg_(pg), bucket_elems_(std::max<size_t>(bucket_elems, 1)), overlap_(overlap) {}

GradientBucketer::~GradientBucketer() {
  // A bucket still in flight (an exception unwound the step) must finish before its buffers go.
  for (auto& b : in_flight_) {
    try {
      b->work->wait();
    } catch (...) {
    }
  }
}

void GradientBucketer::add_unit(int unit, const float* grad) {
  const UnitShard& s = map_.units()[static_cast<size_t>(unit)];
  const size_t world = static_cast<size_t>(map_.world_size());
  if (!open_) {
    open_ = std::make_unique<Bucket>();
    open_->chunks.resize(world);
  }
  Bucket& b = *open_;
  // Rank r's chunk collects shard r of every unit in the bucket, zero-padded to the shard size.
  for (size_t r = 0; r < world; ++r) {
    std::vector<float>& c = b.chunks[r];
    size_t begin = std::min(s.numel, r * s.shard);
    size_t end = std::min(s.numel, begin + s.shard);
    c.insert(c.end(), grad + begin, grad + end);
    c.resize(c.size() + (s.shard - (end - begin)), 0.0f);
  }
  b.shard_elems += s.shard;
  b.units.push_back(unit);
  if (b.shard_elems * world >= bucket_elems_) launch(std::move(open_));
}

void GradientBucketer::launch(std::unique_ptr<Bucket> b) {
  b->staging.reserve(b->shard_elems * b->chunks.size());
  for (auto& c : b->chunks) {
    b->staging.insert(b->staging.end(), c.begin(), c.end());
    std::vector<float>().swap(c);
  }
  b->out.assign(b->shard_elems, 0.0f);
  peak_staging_ = std::max(peak_staging_, (b->staging.size() + b->out.size()) * sizeof(float));
  b->work = pg_.reduce_scatter_async(b->staging.data(), b->out.data(), b->shard_elems, DType::F32, ReduceOp::Avg);
  if (overlap_) {
    in_flight_.push_back(std::move(b));
  } else {
    b->work->wait();
    b->staging.clear();
    b->staging.shrink_to_fit();
    done_.push_back(std::move(b));
  }
}

void GradientBucketer::complete(Bucket& b, float* part_grads) {
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
  if (open_) launch(std::move(open_));
  for (auto& b : in_flight_) {
    b->work->wait();
    complete(*b, part_grads);
  }
  for (auto& b : done_) complete(*b, part_grads);
  in_flight_.clear();
  done_.clear();
}

size_t GradientBucketer::comm_bytes() const { return peak_staging_; }

void allgather_partition(const PartitionMap& map, ProcessGroup& pg, const float* part, float* flat,
                         size_t bucket_elems) {
  const auto& units = map.units();
  const size_t world = static_cast<size_t>(map.world_size());
  std::vector<float> gathered;
  size_t u0 = 0;
  while (u0 < units.size()) {
    // Consecutive units are consecutive in every partition, so one allgather moves them all.
    size_t u1 = u0, chunk = 0;
    do {
      chunk += units[u1].shard;
      ++u1;
    } while (u1 < units.size() && (chunk + units[u1].shard) * world <= bucket_elems);
    gathered.resize(chunk * world);
    pg.allgather(part + units[u0].local_offset, gathered.data(), chunk, DType::F32);
    for (size_t r = 0; r < world; ++r) {
      const float* src = gathered.data() + r * chunk;
      for (size_t u = u0; u < u1; ++u) {
        const UnitShard& s = units[u];
        size_t begin = std::min(s.numel, r * s.shard);
        size_t end = std::min(s.numel, begin + s.shard);
        std::memcpy(flat + s.flat_offset + begin, src, (end - begin) * sizeof(float));
        src += s.shard;
      }
    }
    u0 = u1;
  }
}

}  // namespace zt
