#pragma once
// When stage 3 on the GPU gathers, prefetches and frees each unit's full parameters: the rules of the CPU
// coordinator (param_coordinator.h: persistent small units, the fetch order recorded in the first step, prefetch
// along it within stage3_prefetch_bucket_size and stage3_max_live_parameters, keeping a released unit that the
// trace uses again within stage3_max_reuse_distance), separated from the buffers and collectives, which a
// UnitGatherer carries out. Plain C++, so the order of gathers and frees is tested on the CPU against a fake.
#include <cstddef>
#include <vector>

#include "engine/config/config.h"

namespace zt {

class UnitGatherer {
 public:
  virtual ~UnitGatherer() = default;
  // Takes a buffer for the unit and starts its all-gather (may return before it is done).
  virtual void start(int unit) = 0;
  // The unit's all-gather is complete: the model may read its buffer after this.
  virtual void finish(int unit) = 0;
  // The unit's buffer goes back (the model is done with it; its all-gather was finished before).
  virtual void drop(int unit) = 0;
};

class UnitGatherPlanner {
 public:
  // unit_elements: the gathered (padded) size of each unit.
  UnitGatherPlanner(std::vector<size_t> unit_elements, const ZeroConfig& cfg, UnitGatherer& gatherer);

  // The unit's buffer is gathered and complete on return (started now, or earlier by a prefetch or kept).
  // Repeating a fetch without a release in between is allowed (the tied LM head and the embeddings in backward).
  void fetch(int unit);
  void release(int unit);
  void begin_step();
  // The partitions changed (an update, an import): drops every gathered unit, freezes the trace recorded in the
  // first step and gathers the persistent units again.
  void end_step();
  void drop_all();

  bool gathered(int unit) const { return state_[static_cast<size_t>(unit)] != State::Absent; }
  bool persistent(int unit) const { return persistent_[static_cast<size_t>(unit)]; }
  size_t live_elements() const { return live_; }
  size_t peak_live_elements() const { return peak_live_; }
  const std::vector<int>& trace() const { return trace_; }

 private:
  enum class State { Absent, InFlight, Ready };
  void start(int unit);
  void drop(int unit);
  void prefetch_after(size_t pos);
  bool keep_for_reuse(int unit) const;

  std::vector<size_t> elements_;
  ZeroConfig cfg_;
  UnitGatherer& gatherer_;
  std::vector<State> state_;
  std::vector<bool> persistent_;
  std::vector<int> trace_;
  bool trace_frozen_ = false;
  bool on_trace_ = false;
  size_t cursor_ = 0;  // position in the trace of the next expected fetch
  size_t live_ = 0, peak_live_ = 0;
};

}  // namespace zt
