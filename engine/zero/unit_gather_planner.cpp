#include "engine/zero/unit_gather_planner.h"

#include <algorithm>
#include <string>

#include "engine/base/error.h"

namespace zt {

UnitGatherPlanner::UnitGatherPlanner(std::vector<size_t> unit_elements, const ZeroConfig& cfg,
                                     UnitGatherer& gatherer)
    : elements_(std::move(unit_elements)), cfg_(cfg), gatherer_(gatherer), state_(elements_.size(), State::Absent),
      persistent_(elements_.size(), false) {
  for (size_t u = 0; u < elements_.size(); ++u)
    persistent_[u] = static_cast<int64_t>(elements_[u]) < cfg.stage3_param_persistence_threshold;
}

void UnitGatherPlanner::start(int unit) {
  gatherer_.start(unit);
  state_[static_cast<size_t>(unit)] = State::InFlight;
  live_ += elements_[static_cast<size_t>(unit)];
  peak_live_ = std::max(peak_live_, live_);
}

void UnitGatherPlanner::drop(int unit) {
  State& s = state_[static_cast<size_t>(unit)];
  if (s == State::Absent) return;
  if (s == State::InFlight) gatherer_.finish(unit);  // a collective is never abandoned half way
  gatherer_.drop(unit);
  s = State::Absent;
  live_ -= elements_[static_cast<size_t>(unit)];
}

void UnitGatherPlanner::fetch(int unit) {
  if (unit < 0 || static_cast<size_t>(unit) >= state_.size())
    throw RuntimeError("UnitGatherPlanner: fetch of unknown unit " + std::to_string(unit));
  if (!trace_frozen_) trace_.push_back(unit);
  size_t pos = 0;
  if (trace_frozen_ && on_trace_) {
    if (cursor_ < trace_.size() && trace_[cursor_] == unit)
      pos = cursor_++;
    else
      on_trace_ = false;  // another order (eval, a changed schedule): on demand until the next step
  }
  State& s = state_[static_cast<size_t>(unit)];
  if (s == State::Absent) start(unit);
  if (s == State::InFlight) {
    gatherer_.finish(unit);
    s = State::Ready;
  }
  if (trace_frozen_ && on_trace_) prefetch_after(pos);
}

void UnitGatherPlanner::prefetch_after(size_t pos) {
  size_t bucket = 0;
  for (size_t j = pos + 1; j < trace_.size(); ++j) {
    const int v = trace_[j];
    if (state_[static_cast<size_t>(v)] != State::Absent) continue;
    const size_t need = elements_[static_cast<size_t>(v)];
    if (static_cast<int64_t>(bucket + need) > cfg_.stage3_prefetch_bucket_size) break;
    if (static_cast<int64_t>(live_ + need) > cfg_.stage3_max_live_parameters) break;
    start(v);
    bucket += need;
  }
}

bool UnitGatherPlanner::keep_for_reuse(int unit) const {
  if (!trace_frozen_ || !on_trace_) return false;
  size_t distance = 0;  // elements the trace gathers before the unit's next use
  for (size_t j = cursor_; j < trace_.size(); ++j) {
    if (trace_[j] == unit)
      return static_cast<int64_t>(distance) <= cfg_.stage3_max_reuse_distance &&
             static_cast<int64_t>(live_) <= cfg_.stage3_max_live_parameters;
    distance += elements_[static_cast<size_t>(trace_[j])];
  }
  return false;
}

void UnitGatherPlanner::release(int unit) {
  if (persistent_[static_cast<size_t>(unit)] || keep_for_reuse(unit)) return;
  drop(unit);
}

void UnitGatherPlanner::begin_step() {
  cursor_ = 0;
  on_trace_ = trace_frozen_;
}

void UnitGatherPlanner::drop_all() {
  for (size_t u = 0; u < state_.size(); ++u) drop(static_cast<int>(u));
}

void UnitGatherPlanner::end_step() {
  drop_all();
  if (!trace_.empty()) trace_frozen_ = true;
  for (size_t u = 0; u < state_.size(); ++u) {
    if (!persistent_[u]) continue;
    start(static_cast<int>(u));
    gatherer_.finish(static_cast<int>(u));
    state_[u] = State::Ready;
  }
  on_trace_ = false;
}

}  // namespace zt
