#pragma once
// What a rank owns at stages 1-3: the fp32 master weights of its partition, the reduced gradients of that partition,
// the optimizer state over it and the loss scaler. The stage engines differ in how gradients arrive here and how
// updated weights get back to the model; the update itself and checkpoint access are the same, so they live here.
// With offload_optimizer.device = nvme the master and the optimizer state live in swap files (NvmeOptimizerState):
// no fp32 master is kept in memory, and the engines keep the working-precision copy they gather from up to date
// through the MasterSink they pass to update() and stream_master().
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
  // The fp32 master partition in memory; nullptr with NVMe offload (then read_master / stream_master).
  const float* master_in_memory() const { return nvme_ ? nullptr : master_.data(); }
  float* grads() { return grads_.data(); }
  size_t size() const { return map_.partition_numel(); }
  void zero_grads();

  // Overflow check, unscale, global norm, clipping, then the optimizer on the master partition; the updated master
  // goes to updated (every element once, in order: in sub-groups with NVMe offload, else in one piece). False when
  // the step is skipped (fp16 overflow on some rank); then updated is not called.
  bool update(double lr, int64_t step, StepResult& r, const MasterSink& updated);
  // The current master through sink, as update() hands it over.
  void stream_master(const MasterSink& sink);
  void read_master(float* out);  // size() floats
  // The master partition for a save: in memory, or read from its swap file into scratch.
  const float* master_for_save(std::vector<float>& scratch);

  float loss_scale() const { return scaler_.scale(); }
  // In memory: m, v (or momentum); with NVMe offload the staging buffer sets instead.
  size_t optimizer_state_bytes() const;
  size_t master_bytes() const { return nvme_ ? 0 : size() * sizeof(float); }  // the fp32 master in memory
  size_t optimizer_bytes() const { return optimizer_state_bytes() + master_bytes(); }
  double io_wait_seconds() const { return nvme_ ? nvme_->io_wait_seconds() : 0.0; }
  const NvmeOptimizerState* nvme_state() const { return nvme_.get(); }
  std::vector<std::string> state_names() const;
  void export_partition(const std::string& name, float* partition);
  void import_full(const std::string& name, const float* flat);
  ScalerState scaler_state() const;
  void set_scaler_state(const ScalerState& s);

 private:
  float* state_buffer(const std::string& name);

  const Config& cfg_;
  ProcessGroup& pg_;
  PartitionMap map_;
  std::vector<float> master_;  // empty with NVMe offload
  std::vector<float> grads_;
  // Exactly one of these updates the partition: the reference optimizer, the vectorised CPU Adam
  // (offload_optimizer.device = cpu: bit-identical results), or CPU Adam streaming master and state from NVMe.
  std::unique_ptr<Optimizer> optimizer_;
  bool cpu_adam_ = false;
  std::unique_ptr<NvmeOptimizerState> nvme_;
  std::vector<DecayRange> ranges_;
  LossScaler scaler_;
};

}  // namespace zt
