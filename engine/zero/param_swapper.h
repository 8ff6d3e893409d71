#pragma once
// ZeRO-Infinity's parameter offload to NVMe (offload_param.device = nvme, stage 3): this rank's parameter partition
// in working precision (fp32, or bf16/fp16 bits) lives in one swap file under offload_param.nvme_path, each layer
// unit's shard at a 4096-aligned offset. Stage 3's coordinator takes a unit's shard from here before it all-gathers
// it. Shards pass through offload_param.buffer_count page-aligned buffers (each holds one shard, so buffer_size must
// hold the largest); at most offload_param.max_in_cpu elements are in memory (being read or resident) at a time.
//
// A shard is "pinned" while an all-gather reads it. Unpinned shards stay resident as a cache until their buffer is
// needed; shards read ahead and not used yet are evicted last. Every decision depends only on the sequence of calls,
// never on I/O timing, so all ranks make the same ones (their collectives stay in step).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/config/config.h"
#include "engine/zero/mixed_precision.h"
#include "engine/zero/partition_map.h"
#include "offload/async_io.h"
#include "offload/io_file.h"
#include "offload/pinned_buffer_pool.h"

namespace zt {

class ParamSwapper {
 public:
  // Creates the swap file; throws ConfigError naming the key when buffer_size or max_in_cpu cannot hold the largest
  // shard, RuntimeError naming nvme_path when the file cannot be created.
  ParamSwapper(const PartitionMap& map, const Config& cfg, int rank, WorkingPrecision precision);
  ~ParamSwapper();

  // Writes the partition back (the fp32 master, converted to working precision) as the optimizer produces it:
  // write_range for consecutive ranges [begin, begin + len) of the partition from 0 (master points at element
  // begin), then finish_write once they cover it. A unit's shard is written through the buffers (buffer_count writes
  // in flight) as soon as all its elements have arrived. The first write_range drops every resident shard; nothing
  // may be pinned. finish_write without a write_range (a skipped step) does nothing.
  void write_range(size_t begin, size_t len, const float* master);
  void finish_write();
  void write_partition(const float* master);  // the whole partition at once
  // Starts reading the unit's shard when it is neither resident nor being read, into a free buffer or one whose
  // shard was already used, within max_in_cpu. False when it cannot (the caller stops reading ahead).
  bool read_ahead(int unit);
  // Whether acquire(unit) finds a buffer without waiting for a pinned shard to be unpinned.
  bool can_acquire(int unit) const;
  // The unit's shard (shard elements of floats or 16-bit values), read now if needed, pinned until unpin(unit).
  const void* acquire(int unit);
  void unpin(int unit);

  double io_wait_seconds() const { return io_wait_s_; }  // time spent waiting for reads and write-backs
  size_t buffer_bytes() const { return pool_->count() * pool_->buffer_bytes(); }
  size_t peak_resident_elements() const { return peak_resident_; }
  size_t reads() const { return reads_; }  // shard reads issued so far
  const std::string& path() const { return file_.path(); }

 private:
  struct Slot {
    void* buffer = nullptr;
    int unit = -1;  // whose shard it holds (or is reading); -1: free
    offload::IoHandle io = 0;  // a read or write in flight
    int pins = 0;
    bool used = false;   // pinned at least once since it was read: evicted first
    uint64_t stamp = 0;  // when it was last read or unpinned
  };
  size_t shard_elems(int unit) const { return map_.units()[static_cast<size_t>(unit)].shard; }
  size_t shard_bytes(int unit) const { return shard_elems(unit) * elem_bytes_; }
  int slot_of(int unit) const { return slot_of_[static_cast<size_t>(unit)]; }
  void wait_io(Slot& s);
  void evict(Slot& s);
  // An unpinned slot to reuse: a free one, else the least recently used one already used; with take_unused also
  // the most recently read-ahead unused one. -1 when none.
  int victim(bool take_unused) const;
  void start_read(Slot& s, int unit);

  const PartitionMap& map_;
  WorkingPrecision precision_;
  size_t elem_bytes_;
  size_t max_in_cpu_;
  std::vector<int64_t> offsets_;  // each unit's shard in the file
  std::unique_ptr<offload::AsyncIO> aio_;
  offload::IoFile file_;
  std::unique_ptr<offload::PinnedBufferPool> pool_;
  std::vector<Slot> slots_;
  std::vector<int> slot_of_;  // unit -> slot, -1 when not in memory
  size_t resident_ = 0, peak_resident_ = 0, reads_ = 0;
  bool writing_ = false;
  size_t written_ = 0;     // partition elements received by write_range since the write began
  size_t write_unit_ = 0;  // the unit whose shard written_ falls in
  uint64_t clock_ = 0;
  double io_wait_s_ = 0.0;
};

}  // namespace zt
