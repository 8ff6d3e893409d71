#pragma once
// Mixed precision as the engines apply it. Parameters and gradients are held in a 16-bit working precision (bf16 or
// fp16) while the fp32 master weights and optimizer state are updated in fp32. On CPU the arithmetic is fp32: a
// 16-bit tensor is materialised as fp32 values that are exactly representable in 16 bits (rounded to nearest even),
// so every result equals what a 16-bit store would give.
#include <cstddef>
#include <cstdint>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"

namespace zt {

enum class WorkingPrecision { F32, BF16, F16 };

WorkingPrecision working_precision(const Config& cfg);
inline bool is_mixed(WorkingPrecision p) { return p != WorkingPrecision::F32; }
DType wire_dtype(WorkingPrecision p);

// x[i] = the nearest 16-bit value (round to nearest even); no-op for F32. Overflow in fp16 gives inf, as on a GPU.
void round_to_working(float* x, size_t n, WorkingPrecision p);
void to_working_bits(const float* in, uint16_t* out, size_t n, WorkingPrecision p);
void from_working_bits(const uint16_t* in, float* out, size_t n, WorkingPrecision p);

bool has_nonfinite(const float* x, size_t n);

// DeepSpeed's fp16 loss scaler. Dynamic (loss_scale == 0): starts at 2^initial_scale_power; an overflow consumes one
// unit of hysteresis, and once none is left halves the scale (not below min_loss_scale); loss_scale_window clean
// steps in a row double it. Static (loss_scale > 0): constant. Disabled (not fp16): scale 1, never overflows.
class LossScaler {
 public:
  LossScaler() = default;
  explicit LossScaler(const Fp16Config& cfg);
  bool enabled() const { return enabled_; }
  float scale() const { return scale_; }
  // Records one step's outcome; returns the new scale.
  float update(bool overflow);
  int hysteresis_left() const { return hysteresis_left_; }
  int clean_steps() const { return clean_steps_; }
  void restore(float scale, int hysteresis_left, int clean_steps) {
    scale_ = scale;
    hysteresis_left_ = hysteresis_left;
    clean_steps_ = clean_steps;
  }

 private:
  bool enabled_ = false;
  bool dynamic_ = false;
  float scale_ = 1.0f;
  float min_scale_ = 1.0f;
  int window_ = 1000;
  int hysteresis_ = 2;
  int hysteresis_left_ = 2;
  bool consecutive_hysteresis_ = false;
  int clean_steps_ = 0;
};

// True when any rank saw inf/NaN in its gradients (local_overflow on some rank; all ranks agree). Also where tests
// inject an overflow: ZT_INJECT_OVERFLOW=R:S makes rank R report one at its S-th call (1-based).
bool agree_on_overflow(ProcessGroup& pg, bool local_overflow);

}  // namespace zt
