#include "engine/zero/owned_partition.h"

#include <algorithm>
#include <cstring>

#include "engine/zero/engine_common.h"

#include "engine/base/error.h"

namespace zt {

OwnedPartition::OwnedPartition(const Config& cfg, GPT2& model, ProcessGroup& pg)
    : cfg_(cfg),
      pg_(pg),
      map_(model, pg.size()),
      master_(map_.partition_numel()),
      grads_(map_.partition_numel(), 0.0f),
      ranges_(map_.decay_ranges(model.params(), pg.rank())),
      scaler_(cfg.fp16) {
  map_.flat_to_partition(model.param_data(), master_.data(), pg.rank());
  const OffloadDevice where = cfg.zero.offload_optimizer.device;
  const bool adam = cfg.optimizer.type != OptimizerType::SGD;
  if (where == OffloadDevice::Nvme) {
    if (!adam)
      throw ConfigError("zero_optimization.offload_optimizer.device=nvme needs Adam or AdamW (the offloaded step is "
                        "CPU Adam), not SGD");
    nvme_ = std::make_unique<NvmeOptimizerState>(cfg, map_.partition_numel(), pg.rank(), master_.data());
    std::vector<float>().swap(master_);  // the swap file holds it from now on
  } else {
    optimizer_ = make_optimizer(cfg.optimizer, map_.partition_numel());
    cpu_adam_ = where == OffloadDevice::Cpu && adam;
  }
}

void OwnedPartition::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

bool OwnedPartition::update(double lr, int64_t step, StepResult& r, const MasterSink& updated) {
  if (!finish_gradients(pg_, scaler_, grads_.data(), grads_.size(), cfg_.gradient_clipping, true, r)) return false;
  if (nvme_) {
    const double waited = nvme_->io_wait_seconds();
    nvme_->step(grads_.data(), ranges_, offload::cpu_adam_hyper(cfg_.optimizer, lr), step, updated);
    r.io_wait_s = nvme_->io_wait_seconds() - waited;
    return true;
  }
  if (cpu_adam_)
    offload::cpu_adam_step(master_.data(), grads_.data(), state_buffer("exp_avg"), state_buffer("exp_avg_sq"),
                           master_.size(), offload::cpu_adam_hyper(cfg_.optimizer, lr), step, ranges_);
  else
    optimizer_->step(master_.data(), grads_.data(), ranges_, lr, step);
  updated(0, master_.size(), master_.data());
  return true;
}

void OwnedPartition::stream_master(const MasterSink& sink) {
  if (nvme_)
    nvme_->read_master(sink);
  else
    sink(0, master_.size(), master_.data());
}

void OwnedPartition::read_master(float* out) { export_partition("master", out); }

const float* OwnedPartition::master_for_save(std::vector<float>& scratch) {
  if (!nvme_) return master_.data();
  scratch.resize(size());
  read_master(scratch.data());
  return scratch.data();
}

size_t OwnedPartition::optimizer_state_bytes() const {
  if (nvme_) return nvme_->buffer_bytes();
  return optimizer_->state().size() * optimizer_->size() * sizeof(float);
}

std::vector<std::string> OwnedPartition::state_names() const {
  return nvme_ ? std::vector<std::string>{"master", "exp_avg", "exp_avg_sq"} : checkpoint_state_names(*optimizer_);
}

float* OwnedPartition::state_buffer(const std::string& name) {
  return name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
}

void OwnedPartition::export_partition(const std::string& name, float* partition) {
  if (nvme_) {
    nvme_->read_state(name, partition);
    return;
  }
  std::memcpy(partition, state_buffer(name), map_.partition_numel() * sizeof(float));
}

void OwnedPartition::import_full(const std::string& name, const float* flat) {
  if (nvme_) {
    std::vector<float> part(map_.partition_numel());
    map_.flat_to_partition(flat, part.data(), pg_.rank());
    nvme_->write_state(name, part.data());
    return;
  }
  map_.flat_to_partition(flat, state_buffer(name), pg_.rank());
}

ScalerState OwnedPartition::scaler_state() const {
  return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
}

void OwnedPartition::set_scaler_state(const ScalerState& s) {
  scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps);
}

}  // namespace zt
