#include "engine/zero/owned_partition.h"

#include <algorithm>
#include <cstring>

#include "engine/zero/engine_common.h"

namespace zt {

OwnedPartition::OwnedPartition(const Config& cfg, GPT2& model, ProcessGroup& pg)
    : cfg_(cfg),
      pg_(pg),
      map_(model, pg.size()),
      master_(map_.partition_numel()),
      grads_(map_.partition_numel(), 0.0f),
      optimizer_(make_optimizer(cfg.optimizer, map_.partition_numel())),
      ranges_(map_.decay_ranges(model.params(), pg.rank())),
      scaler_(cfg.fp16) {
  map_.flat_to_partition(model.param_data(), master_.data(), pg.rank());
}

void OwnedPartition::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

bool OwnedPartition::update(double lr, int64_t step, StepResult& r) {
  if (!finish_gradients(pg_, scaler_, grads_.data(), grads_.size(), cfg_.gradient_clipping, true, r)) return false;
  optimizer_->step(master_.data(), grads_.data(), ranges_, lr, step);
  return true;
}

size_t OwnedPartition::optimizer_state_bytes() const {
  return optimizer_->state().size() * optimizer_->size() * sizeof(float);
}

std::vector<std::string> OwnedPartition::state_names() const { return checkpoint_state_names(*optimizer_); }

float* OwnedPartition::state_buffer(const std::string& name) {
  return name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
}

void OwnedPartition::export_partition(const std::string& name, float* partition) {
  std::memcpy(partition, state_buffer(name), map_.partition_numel() * sizeof(float));
}

void OwnedPartition::import_full(const std::string& name, const float* flat) {
  map_.flat_to_partition(flat, state_buffer(name), pg_.rank());
}

ScalerState OwnedPartition::scaler_state() const {
  return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
}

void OwnedPartition::set_scaler_state(const ScalerState& s) {
  scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps);
}

}  // namespace zt
