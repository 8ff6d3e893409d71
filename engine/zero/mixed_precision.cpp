#include "engine/zero/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/base/error.h"
#include "kernels/cpu/half_convert.h"

namespace zt {

WorkingPrecision working_precision(const Config& cfg) {
  if (cfg.fp16.enabled) return WorkingPrecision::F16;
  if (cfg.bf16) return WorkingPrecision::BF16;
  return WorkingPrecision::F32;
}

DType wire_dtype(WorkingPrecision p) {
  switch (p) {
    case WorkingPrecision::BF16: return DType::BF16;
    case WorkingPrecision::F16: return DType::F16;
    default: return DType::F32;
  }
}

void round_to_working(float* x, size_t n, WorkingPrecision p) {
  if (p == WorkingPrecision::BF16) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) x[i] = bf16_to_float(float_to_bf16(x[i]));
  } else if (p == WorkingPrecision::F16) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) x[i] = fp16_to_float(float_to_fp16(x[i]));
  }
}

void to_working_bits(const float* in, uint16_t* out, size_t n, WorkingPrecision p) {
  if (p == WorkingPrecision::BF16) float_to_bf16_array(in, out, n);
  else if (p == WorkingPrecision::F16) float_to_fp16_array(in, out, n);
  else throw RuntimeError("to_working_bits: fp32 has no 16-bit form");
}

void from_working_bits(const uint16_t* in, float* out, size_t n, WorkingPrecision p) {
  if (p == WorkingPrecision::BF16) {
    for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
  } else if (p == WorkingPrecision::F16) {
    for (size_t i = 0; i < n; ++i) out[i] = fp16_to_float(in[i]);
  } else {
    throw RuntimeError("from_working_bits: fp32 has no 16-bit form");
  }
}

bool has_nonfinite(const float* x, size_t n) {
  int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
  for (size_t i = 0; i < n; ++i) bad |= !std::isfinite(x[i]);
  return bad != 0;
}

LossScaler::LossScaler(const Fp16Config& cfg)
    : enabled_(cfg.enabled),
      dynamic_(cfg.enabled && cfg.loss_scale <= 0.0),
      scale_(!cfg.enabled ? 1.0f
                          : cfg.loss_scale > 0.0 ? static_cast<float>(cfg.loss_scale)
                                                 : std::ldexp(1.0f, cfg.initial_scale_power)),
      min_scale_(static_cast<float>(cfg.min_loss_scale)),
      window_(std::max(1, cfg.loss_scale_window)),
      hysteresis_(std::max(1, cfg.hysteresis)),
      hysteresis_left_(std::max(1, cfg.hysteresis)),
      consecutive_hysteresis_(cfg.consecutive_hysteresis) {}

float LossScaler::update(bool overflow) {
  if (!dynamic_) return scale_;
  if (overflow) {
    if (hysteresis_ == 1 || hysteresis_left_ == 1) {
      scale_ = std::max(scale_ / 2.0f, min_scale_);
    } else {
      --hysteresis_left_;
    }
    clean_steps_ = 0;
    return scale_;
  }
  if (consecutive_hysteresis_) hysteresis_left_ = hysteresis_;
  if (++clean_steps_ % window_ == 0) {
    scale_ *= 2.0f;
    if (!consecutive_hysteresis_) hysteresis_left_ = hysteresis_;
  }
  return scale_;
}

bool agree_on_overflow(ProcessGroup& pg, bool local_overflow) {
  static int calls = 0;
  ++calls;
  float flag = local_overflow ? 1.0f : 0.0f;
  if (const char* inject = std::getenv("ZT_INJECT_OVERFLOW")) {
    int r = -1, s = -1;
    if (std::sscanf(inject, "%d:%d", &r, &s) == 2 && r == pg.rank() && s == calls) flag = 1.0f;
  }
  if (pg.size() > 1) pg.allreduce(&flag, 1, DType::F32, ReduceOp::Max);
  return flag != 0.0f;
}

}  // namespace zt
