#pragma once
// The ZeRO engine owns everything about a training step that depends on the stage: where gradients are reduced,
// which slice of the optimizer state this rank keeps, and how updated parameters get back to every rank.
// The model only computes; the trainer only sequences micro-batches and logging.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"
#include "engine/model/gpt2.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/partition_map.h"

namespace zt {

// Everything besides the named partition buffers that a checkpoint must restore for an exact resume.
struct ScalerState {
  float scale = 1.0f;
  int hysteresis_left = 0;
  int clean_steps = 0;
};

struct StepResult {
  double grad_norm = 0.0;  // global, before clipping
  bool skipped = false;    // overflow: no update
  float loss_scale = 1.0f;  // the scale this step's gradients carried
  double io_wait_s = 0.0;   // time the update waited on offload I/O
};

// Bytes this rank holds for model states and communication, as the engine accounts them.
// Model states are what ZeRO's formulas count (parameters in working precision, gradients, fp32 master weights and
// optimizer state); transient buffers (stage-2/3 unit gradients and gathered parameters, bucket staging) are
// counted apart, as their peak.
struct MemoryStats {
  size_t param_bytes = 0;
  size_t grad_bytes = 0;
  size_t optimizer_bytes = 0;  // in memory: fp32 master copy (where one is kept) + optimizer state or its buffers
  size_t comm_bytes = 0;       // peak transient buffers
  size_t model_state_bytes() const { return param_bytes + grad_bytes + optimizer_bytes; }
};

class ZeroEngine {
 public:
  virtual ~ZeroEngine() = default;
  // Before the first micro-batch of an optimizer step.
  virtual void begin_step() = 0;
  // Before the forward of one micro-batch; last says it is the step's last one. A hint: an engine that reduces
  // during the last micro-batch's backward (the GPU engine at stages 0-1) does so only when told, and otherwise
  // reduces at end_micro_batch(true).
  virtual void begin_micro_batch(bool last) { (void)last; }
  // After the backward of one micro-batch; last says it is the step's last one (the accumulation boundary).
  virtual void end_micro_batch(bool last) = 0;
  // Clips, updates with lr (the 1-based optimizer step number drives bias correction) and makes the updated
  // parameters visible to the model on every rank.
  // A skipped step (fp16 overflow) changes no parameter and does not count as an optimizer step.
  virtual StepResult step(double lr, int64_t step) = 0;
  virtual MemoryStats memory() const = 0;
  // What the trainer multiplies the loss gradient by (fp16's loss scale; 1 otherwise).
  virtual float loss_scale() const = 0;
  // The full fp32 parameters in the model's flat layout into out (num_params floats). Collective: every rank calls.
  virtual void gather_full_params(float* out) = 0;
  virtual int stage() const = 0;

  // Checkpointing. Whatever the stage, a rank's state is saved in the layout of partition_map() (this world size):
  // for each of state_names() ("master": the fp32 weights, then the optimizer's buffers) the rank's partition.
  virtual const PartitionMap& partition_map() const = 0;
  virtual std::vector<std::string> state_names() const = 0;
  virtual void export_partition(const std::string& name, float* partition) = 0;
  // Resume from full flat tensors (num_params floats, the model's layout), rebuilt from any world size or stage;
  // every rank calls import_full for each name, then finish_import (collective) makes the weights live.
  virtual void import_full(const std::string& name, const float* flat) = 0;
  virtual void finish_import() = 0;
  virtual ScalerState scaler_state() const = 0;
  virtual void set_scaler_state(const ScalerState& s) = 0;
};

std::unique_ptr<ZeroEngine> make_zero_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);

}  // namespace zt
