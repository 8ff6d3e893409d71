#include "engine/zero/param_swapper.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

namespace {

size_t largest_shard(const PartitionMap& map) {
  size_t most = 0;
  for (const UnitShard& u : map.units()) most = std::max(most, u.shard);
  return most;
}

// Each unit's shard at a 4096-aligned offset of the swap file, after checking that the buffers can hold them.
std::vector<int64_t> shard_offsets(const PartitionMap& map, const OffloadParamConfig& o, size_t elem_bytes) {
  check_offload_param_buffers(o, static_cast<int64_t>(largest_shard(map)), map.world_size());
  std::vector<int64_t> offsets;
  int64_t at = 0;
  for (const UnitShard& u : map.units()) {
    offsets.push_back(at);
    at += static_cast<int64_t>(offload::io_padded_size(u.shard * elem_bytes));
  }
  return offsets;
}

}  // namespace

ParamSwapper::ParamSwapper(const PartitionMap& map, const Config& cfg, int rank, WorkingPrecision precision)
    : map_(map),
      precision_(precision),
      elem_bytes_(is_mixed(precision) ? sizeof(uint16_t) : sizeof(float)),
      max_in_cpu_(static_cast<size_t>(cfg.zero.offload_param.max_in_cpu)),
      offsets_(shard_offsets(map, cfg.zero.offload_param, elem_bytes_)),
      aio_(offload::make_async_io(cfg.aio)),
      file_(offload::IoFile::create_in(cfg.zero.offload_param.nvme_path, "rank" + std::to_string(rank) + "_params")),
      slot_of_(map.units().size(), -1) {
  // A buffer never needs more than the largest shard, and more buffers than units would stay unused.
  const size_t count = std::min(static_cast<size_t>(std::max(cfg.zero.offload_param.buffer_count, 1)),
                                map.units().size());
  pool_ = std::make_unique<offload::PinnedBufferPool>(count, largest_shard(map) * elem_bytes_,
                                                      cfg.zero.offload_param.pin_memory);
  slots_.resize(count);
  for (Slot& s : slots_) s.buffer = pool_->acquire();
}

ParamSwapper::~ParamSwapper() {
  try {
    aio_->wait_all();
  } catch (...) {
  }
}

void ParamSwapper::wait_io(Slot& s) {
  if (s.io == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  const offload::IoHandle h = s.io;
  s.io = 0;
  aio_->wait(h);
  io_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void ParamSwapper::evict(Slot& s) {
  wait_io(s);  // a read in flight must land before the buffer is reused
  if (s.unit < 0) return;
  resident_ -= shard_elems(s.unit);
  slot_of_[static_cast<size_t>(s.unit)] = -1;
  s.unit = -1;
  s.used = false;
}

int ParamSwapper::victim(bool take_unused) const {
  int best_used = -1, best_unused = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.unit < 0 || s.pins > 0) continue;
    if (s.used) {
      if (best_used < 0 || s.stamp < slots_[static_cast<size_t>(best_used)].stamp) best_used = static_cast<int>(i);
    } else if (best_unused < 0 || s.stamp > slots_[static_cast<size_t>(best_unused)].stamp) {
      best_unused = static_cast<int>(i);
    }
  }
  if (best_used >= 0) return best_used;
  return take_unused ? best_unused : -1;
}

void ParamSwapper::start_read(Slot& s, int unit) {
  const size_t i = static_cast<size_t>(&s - slots_.data());
  s.unit = unit;
  s.used = false;
  s.stamp = ++clock_;
  slot_of_[static_cast<size_t>(unit)] = static_cast<int>(i);
  resident_ += shard_elems(unit);
  peak_resident_ = std::max(peak_resident_, resident_);
  ++reads_;
  s.io = aio_->read(file_, s.buffer, shard_bytes(unit), offsets_[static_cast<size_t>(unit)]);
}

bool ParamSwapper::read_ahead(int unit) {
  if (const int at = slot_of(unit); at >= 0) {
    Slot& s = slots_[static_cast<size_t>(at)];
    if (s.pins == 0 && s.used) {
      s.used = false;  // wanted again: no longer among the first to go
      s.stamp = ++clock_;
    }
    return true;
  }
  const size_t need = shard_elems(unit);
  for (;;) {
    auto free_slot = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.unit < 0; });
    if (free_slot != slots_.end() && resident_ + need <= max_in_cpu_) {
      start_read(*free_slot, unit);
      return true;
    }
    const int v = victim(false);
    if (v < 0) return false;
    evict(slots_[static_cast<size_t>(v)]);
  }
}

bool ParamSwapper::can_acquire(int unit) const {
  if (slot_of(unit) >= 0) return true;
  size_t pinned = 0;
  bool unpinned_slot = false;
  for (const Slot& s : slots_) {
    if (s.pins > 0)
      pinned += shard_elems(s.unit);
    else
      unpinned_slot = true;
  }
  return unpinned_slot && pinned + shard_elems(unit) <= max_in_cpu_;
}

const void* ParamSwapper::acquire(int unit) {
  if (slot_of(unit) < 0) {
    const size_t need = shard_elems(unit);
    for (;;) {
      auto free_slot = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.unit < 0; });
      if (free_slot != slots_.end() && resident_ + need <= max_in_cpu_) {
        start_read(*free_slot, unit);
        break;
      }
      const int v = victim(true);
      if (v < 0)
        throw RuntimeError("offload_param: all " + std::to_string(slots_.size()) +
                           " buffers (zero_optimization.offload_param.buffer_count) or max_in_cpu " +
                           std::to_string(max_in_cpu_) + " elements hold shards being all-gathered; unit " +
                           std::to_string(unit) + " cannot be read");
      evict(slots_[static_cast<size_t>(v)]);
    }
  }
  Slot& s = slots_[static_cast<size_t>(slot_of(unit))];
  wait_io(s);
  ++s.pins;
  return s.buffer;
}

void ParamSwapper::unpin(int unit) {
  const int at = slot_of(unit);
  if (at < 0 || slots_[static_cast<size_t>(at)].pins == 0)
    throw RuntimeError("offload_param: unpin of unit " + std::to_string(unit) + ", which is not pinned");
  Slot& s = slots_[static_cast<size_t>(at)];
  if (--s.pins == 0) {
    s.used = true;
    s.stamp = ++clock_;
  }
}

void ParamSwapper::write_range(size_t begin, size_t len, const float* master) {
  if (!writing_) {
    for (Slot& s : slots_) {
      if (s.pins > 0)
        throw RuntimeError("offload_param: the partition is written back while unit " + std::to_string(s.unit) +
                           " is still being gathered");
      evict(s);
    }
    writing_ = true;
    written_ = 0;
    write_unit_ = 0;
  }
  if (begin != written_ || begin + len > map_.partition_numel())
    throw RuntimeError("offload_param: write-back of partition elements [" + std::to_string(begin) + ", " +
                       std::to_string(begin + len) + ") after " + std::to_string(written_) + " of " +
                       std::to_string(map_.partition_numel()) + " (out of order)");
  const size_t end = begin + len;
  while (written_ < end) {
    // Unit u's shard goes to slot u mod count; units arrive in order, so only the last one can be incomplete.
    const UnitShard& sh = map_.units()[write_unit_];
    Slot& s = slots_[write_unit_ % slots_.size()];
    if (written_ == sh.local_offset) wait_io(s);  // the slot's previous shard has left its buffer
    const size_t at = written_ - sh.local_offset, n = std::min(end, sh.local_offset + sh.shard) - written_;
    const float* src = master + (written_ - begin);
    if (is_mixed(precision_))
      to_working_bits(src, static_cast<uint16_t*>(s.buffer) + at, n, precision_);
    else
      std::memcpy(static_cast<float*>(s.buffer) + at, src, n * sizeof(float));
    written_ += n;
    if (written_ == sh.local_offset + sh.shard) {
      s.io = aio_->write(file_, s.buffer, shard_bytes(static_cast<int>(write_unit_)), offsets_[write_unit_]);
      ++write_unit_;
    }
  }
}

void ParamSwapper::finish_write() {
  if (!writing_) return;
  writing_ = false;
  for (Slot& s : slots_) wait_io(s);
  if (written_ != map_.partition_numel())
    throw RuntimeError("offload_param: write-back ended after " + std::to_string(written_) + " of " +
                       std::to_string(map_.partition_numel()) + " partition elements");
}

void ParamSwapper::write_partition(const float* master) {
  write_range(0, map_.partition_numel(), master);
  finish_write();
}

}  // namespace zt
