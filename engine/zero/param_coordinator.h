#pragma once
// Stage 3's parameter coordinator. Parameters live partitioned; a unit's full parameters exist only while the
// model uses them. In the first step it records the order in which units are fetched (the trace); later steps
// prefetch along that trace (asynchronous all-gathers) within stage3_prefetch_bucket_size, never holding more than
// stage3_max_live_parameters gathered elements (the unit needed right now is always fetched, hence "plus one
// unit"), and keep a released unit when the trace uses it again within stage3_max_reuse_distance elements.
// Units smaller than stage3_param_persistence_threshold elements stay gathered for the whole run.
// With a ParamSwapper (offload_param.device = nvme) the shards come from the swap file instead of the in-memory
// partition: each fetch also starts reading the shards of the units that follow on the trace, as far as the
// swapper's buffers and max_in_cpu allow.
#include <cstddef>
#include <memory>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"
#include "engine/zero/mixed_precision.h"
#include "engine/zero/param_swapper.h"
#include "engine/zero/partition_map.h"
#include "engine/zero/unit_buffer_pool.h"

namespace zt {

struct CoordinatorEvent {
  enum Kind { Fetch, Prefetch, Hit, Release, Keep } kind;
  int unit;
};

class ParamCoordinator {
 public:
  // partition: this rank's parameter partition in working precision (read at every gather; updated between steps):
  // floats for F32, 16-bit values for BF16/F16 (gathered in 16 bits, then widened for the model).
  // swapper (may be null): where the shards are read from instead of partition (then unused).
  ParamCoordinator(const PartitionMap& map, ProcessGroup& pg, const ZeroConfig& cfg, const void* partition,
                   WorkingPrecision precision, ParamSwapper* swapper = nullptr);
  ~ParamCoordinator();

  // Full parameters of the unit (map.units()[u].padded floats; the first numel are real), gathered if needed.
  float* fetch(int unit);
  // The model is done with the unit for now.
  void release(int unit);
  // A new step starts: follow the trace from its beginning.
  void begin_step();
  // Drops every gathered unit (and the swapper's pins on their shards).
  void drop_all();
  // The optimizer changed the partition: every gathered copy is stale. Drops them (persistent units are gathered
  // again at once) and freezes the trace recorded in the first step.
  void end_step();

  size_t live_elements() const { return live_; }
  size_t peak_live_elements() const { return peak_live_; }
  size_t pool_peak_bytes() const { return pool_.peak_bytes_in_use(); }
  const std::vector<int>& trace() const { return trace_; }
  const std::vector<CoordinatorEvent>& events() const { return events_; }
  bool is_persistent(int unit) const { return persistent_[static_cast<size_t>(unit)]; }

 private:
  struct UnitState {
    float* buffer = nullptr;
    std::shared_ptr<Work> pending;  // an all-gather in flight (prefetch)
    bool in_use = false;
    bool narrow = false;  // holds 16-bit values in its upper half until widened
    bool shard_pinned = false;  // the swapper's buffer is the all-gather's source until it completes
  };
  void gather(int unit, bool async);
  void complete(int unit);
  void drop(int unit);
  void prefetch_after(size_t pos);
  void read_ahead_from(size_t pos);
  const void* shard_source(int unit);
  void finish_gather(UnitState& s, int unit);
  bool keep_for_reuse(int unit, size_t pos) const;

  const PartitionMap& map_;
  ProcessGroup& pg_;
  ZeroConfig cfg_;
  const void* partition_;
  WorkingPrecision precision_;
  ParamSwapper* swapper_;
  UnitBufferPool pool_;
  std::vector<UnitState> units_;
  std::vector<bool> persistent_;
  std::vector<int> trace_;
  bool trace_frozen_ = false;
  bool on_trace_ = false;
  size_t cursor_ = 0;  // position in the trace of the next expected fetch
  size_t live_ = 0, peak_live_ = 0;
  std::vector<CoordinatorEvent> events_;
  bool record_events_ = true;
};

}  // namespace zt
