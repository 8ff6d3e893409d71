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

namespace zt {

struct StepResult {
  double grad_norm = 0.0;  // global, before clipping
  bool skipped = false;    // overflow: no update
  float loss_scale = 1.0f;  // the scale this step's gradients carried
};

// Bytes this rank holds for model states and communication, as the engine accounts them.
// Model states are what ZeRO's formulas count (parameters in working precision, gradients, fp32 master weights and
// optimizer state); transient buffers (stage-2/3 unit gradients and gathered parameters, bucket staging) are
// counted apart, as their peak.
struct MemoryStats {
  size_t param_bytes = 0;
  size_t grad_bytes = 0;
  size_t optimizer_bytes = 0;  // fp32 master copy (where one is kept) + optimizer state
  size_t comm_bytes = 0;       // peak transient buffers
  size_t model_state_bytes() const { return param_bytes + grad_bytes + optimizer_bytes; }
};

class ZeroEngine {
 public:
  virtual ~ZeroEngine() = default;
  // Before the first micro-batch of an optimizer step.
  virtual void begin_step() = 0;
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
};

std::unique_ptr<ZeroEngine> make_zero_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);

}  // namespace zt
