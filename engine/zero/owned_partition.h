#pragma once
// What a rank owns at stages 1-3: the fp32 master weights of its partition, the reduced gradients of that partition,
// the optimizer state over it and the loss scaler. The stage engines differ in how gradients arrive here and how
// updated weights get back to the model; the update itself and checkpoint access are the same, so they live here.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"
#include "engine/model/gpt2.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/mixed_precision.h"
#include "engine/zero/nvme_optimizer_state.h"
#include "engine/zero/partition_map.h"
#include "engine/zero/zero_engine.h"

namespace zt {

class OwnedPartition {
 public:
  // Takes this rank's share of the model's current (full) parameters as the master weights.
  OwnedPartition(const Config& cfg, GPT2& model, ProcessGroup& pg);

  const PartitionMap& map() const { return map_; }
  float* master() { return master_.data(); }
  float* grads() { return grads_.data(); }
  size_t size() const { return master_.size(); }
  void zero_grads();

  // Overflow check, unscale, global norm, clipping, then the optimizer on the master partition. False when the
  // step is skipped (fp16 overflow on some rank).
  bool update(double lr, int64_t step, StepResult& r);

  float loss_scale() const { return scaler_.scale(); }
  size_t optimizer_state_bytes() const;  // in memory: m, v (or momentum); none with NVMe offload
  double io_wait_seconds() const { return nvme_ ? nvme_->io_wait_seconds() : 0.0; }
  size_t optimizer_bytes() const { return optimizer_state_bytes() + size() * sizeof(float); }  // + the fp32 master
  std::vector<std::string> state_names() const;
  void export_partition(const std::string& name, float* partition);
  void import_full(const std::string& name, const float* flat);
  ScalerState scaler_state() const;
  void set_scaler_state(const ScalerState& s);

 private:
  float* state_buffer(const std::string& name);
  offload::CpuAdamHyper adam_hyper(double lr) const;

  const Config& cfg_;
  ProcessGroup& pg_;
  PartitionMap map_;
  std::vector<float> master_;
  std::vector<float> grads_;
  // Exactly one of these updates the partition: the reference optimizer, the vectorised CPU Adam
  // (offload_optimizer.device = cpu: bit-identical results), or CPU Adam streaming its state from NVMe.
  std::unique_ptr<Optimizer> optimizer_;
  bool cpu_adam_ = false;
  std::unique_ptr<NvmeOptimizerState> nvme_;
  std::vector<DecayRange> ranges_;
  LossScaler scaler_;
};

}  // namespace zt
