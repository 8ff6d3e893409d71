#include "engine/zero/param_coordinator.h"

#include <algorithm>
#include <cstring>

#include "engine/base/error.h"
#include "kernels/cpu/half_convert.h"

namespace zt {

namespace {
constexpr size_t kMaxEvents = 1 << 16;  // enough for tests; the log stops growing after that
}

ParamCoordinator::ParamCoordinator(const PartitionMap& map, ProcessGroup& pg, const ZeroConfig& cfg,
                                   const void* partition, WorkingPrecision precision, ParamSwapper* swapper)
    : map_(map), pg_(pg), cfg_(cfg), partition_(partition), precision_(precision), swapper_(swapper),
      units_(map.units().size()),
      persistent_(map.units().size(), false) {
  for (size_t u = 0; u < units_.size(); ++u)
    persistent_[u] = static_cast<int64_t>(map.units()[u].numel) < cfg.stage3_param_persistence_threshold;
}

ParamCoordinator::~ParamCoordinator() {
  for (UnitState& s : units_) {
    if (s.pending) {
      try {
        s.pending->wait();
      } catch (...) {
      }
    }
  }
}

// This rank's shard of the unit: in the partition, or pinned in a swapper buffer until the gather completes.
const void* ParamCoordinator::shard_source(int unit) {
  const UnitShard& sh = map_.units()[static_cast<size_t>(unit)];
  if (!swapper_) {
    if (is_mixed(precision_)) return static_cast<const uint16_t*>(partition_) + sh.local_offset;
    return static_cast<const float*>(partition_) + sh.local_offset;
  }
  // Buffers held by prefetches in flight come back when those gathers complete (lowest unit first; the choice
  // depends only on state, so every rank completes the same ones).
  for (size_t u = 0; u < units_.size() && !swapper_->can_acquire(unit); ++u)
    if (units_[u].shard_pinned) complete(static_cast<int>(u));
  const void* shard = swapper_->acquire(unit);
  units_[static_cast<size_t>(unit)].shard_pinned = true;
  return shard;
}

void ParamCoordinator::gather(int unit, bool async) {
  UnitState& s = units_[static_cast<size_t>(unit)];
  const UnitShard& sh = map_.units()[static_cast<size_t>(unit)];
  const void* src = shard_source(unit);
  s.buffer = pool_.acquire(sh.padded, false);
  live_ += sh.padded;
  peak_live_ = std::max(peak_live_, live_);
  if (is_mixed(precision_)) {
    // 16-bit values land in the upper half of the fp32 buffer and are widened in place after the gather: element i
    // (bytes 4i..4i+3) is written only after every 16-bit value at or before it (bytes >= 2*padded + 2i) was read.
    uint16_t* dst = reinterpret_cast<uint16_t*>(s.buffer) + sh.padded;
    s.pending = pg_.allgather_async(src, dst, sh.shard, wire_dtype(precision_));
    s.narrow = true;
  } else {
    s.pending = pg_.allgather_async(src, s.buffer, sh.shard, DType::F32);
  }
  if (!async) complete(unit);
}

// The gather's collective is done: its source shard may go back to the swapper.
void ParamCoordinator::finish_gather(UnitState& s, int unit) {
  if (s.pending) {
    s.pending->wait();
    s.pending.reset();
  }
  if (s.shard_pinned) {
    s.shard_pinned = false;
    swapper_->unpin(unit);
  }
}

void ParamCoordinator::complete(int unit) {
  UnitState& s = units_[static_cast<size_t>(unit)];
  finish_gather(s, unit);
  if (s.narrow) {
    const size_t padded = map_.units()[static_cast<size_t>(unit)].padded;
    // Byte copies: the same memory is read as 16-bit and written as 32-bit values, which only char access may do.
    unsigned char* bytes = reinterpret_cast<unsigned char*>(s.buffer);
    for (size_t i = 0; i < padded; ++i) {
      uint16_t b;
      std::memcpy(&b, bytes + 2 * padded + 2 * i, sizeof b);
      const float f = precision_ == WorkingPrecision::BF16 ? bf16_to_float(b) : fp16_to_float(b);
      std::memcpy(bytes + 4 * i, &f, sizeof f);
    }
    s.narrow = false;
  }
}

void ParamCoordinator::drop(int unit) {
  UnitState& s = units_[static_cast<size_t>(unit)];
  if (!s.buffer) return;
  finish_gather(s, unit);
  s.narrow = false;
  pool_.release(s.buffer);
  s.buffer = nullptr;
  live_ -= map_.units()[static_cast<size_t>(unit)].padded;
}

float* ParamCoordinator::fetch(int unit) {
  if (unit < 0 || static_cast<size_t>(unit) >= units_.size())
    throw RuntimeError("ParamCoordinator: fetch of unknown unit " + std::to_string(unit));
  UnitState& s = units_[static_cast<size_t>(unit)];
  if (!trace_frozen_) trace_.push_back(unit);
  size_t pos = 0;
  if (trace_frozen_ && on_trace_) {
    if (cursor_ < trace_.size() && trace_[cursor_] == unit) {
      pos = cursor_++;
    } else {
      on_trace_ = false;  // a different order (eval, a changed schedule): fetch on demand until the next step
    }
  }
  const bool hit = s.buffer != nullptr;
  if (!hit) gather(unit, false);
  complete(unit);
  s.in_use = true;
  if (record_events_ && events_.size() < kMaxEvents) events_.push_back({hit ? CoordinatorEvent::Hit : CoordinatorEvent::Fetch, unit});
  if (trace_frozen_ && on_trace_) {
    prefetch_after(pos);
    read_ahead_from(pos + 1);
  }
  return s.buffer;
}

void ParamCoordinator::read_ahead_from(size_t pos) {
  if (!swapper_) return;
  for (size_t j = pos; j < trace_.size(); ++j) {
    const int v = trace_[j];
    if (units_[static_cast<size_t>(v)].buffer) continue;  // gathered or being gathered
    if (!swapper_->read_ahead(v)) break;
  }
}

void ParamCoordinator::prefetch_after(size_t pos) {
  size_t bucket = 0;
  for (size_t j = pos + 1; j < trace_.size(); ++j) {
    const int v = trace_[j];
    UnitState& s = units_[static_cast<size_t>(v)];
    if (s.buffer) continue;
    const size_t need = map_.units()[static_cast<size_t>(v)].padded;
    if (static_cast<int64_t>(bucket + need) > cfg_.stage3_prefetch_bucket_size) break;
    if (static_cast<int64_t>(live_ + need) > cfg_.stage3_max_live_parameters) break;
    gather(v, true);
    bucket += need;
    if (record_events_ && events_.size() < kMaxEvents) events_.push_back({CoordinatorEvent::Prefetch, v});
  }
}

bool ParamCoordinator::keep_for_reuse(int unit, size_t pos) const {
  if (!trace_frozen_ || !on_trace_) return false;
  // Elements the trace gathers between now and this unit's next use.
  size_t distance = 0;
  for (size_t j = pos; j < trace_.size(); ++j) {
    if (trace_[j] == unit) {
      return static_cast<int64_t>(distance) <= cfg_.stage3_max_reuse_distance &&
             static_cast<int64_t>(live_) <= cfg_.stage3_max_live_parameters;
    }
    distance += map_.units()[static_cast<size_t>(trace_[j])].padded;
  }
  return false;
}

void ParamCoordinator::release(int unit) {
  UnitState& s = units_[static_cast<size_t>(unit)];
  s.in_use = false;
  if (persistent_[static_cast<size_t>(unit)] || keep_for_reuse(unit, cursor_)) {
    if (record_events_ && events_.size() < kMaxEvents) events_.push_back({CoordinatorEvent::Keep, unit});
    return;
  }
  drop(unit);
  if (record_events_ && events_.size() < kMaxEvents) events_.push_back({CoordinatorEvent::Release, unit});
}

void ParamCoordinator::begin_step() {
  cursor_ = 0;
  on_trace_ = trace_frozen_;
  if (on_trace_) read_ahead_from(0);
}

void ParamCoordinator::drop_all() {
  for (size_t u = 0; u < units_.size(); ++u) drop(static_cast<int>(u));
}

void ParamCoordinator::end_step() {
  drop_all();
  if (!trace_.empty()) trace_frozen_ = true;
  for (size_t u = 0; u < units_.size(); ++u)
    if (persistent_[u]) gather(static_cast<int>(u), false);
  on_trace_ = false;
}

}  // namespace zt
