// DeepSpeed's WarmupLR, WarmupDecayLR and WarmupCosineLR (deepspeed/runtime/lr_schedules.py), as a pure function
// of the scheduler's last_batch_iteration. DeepSpeed steps the scheduler after each optimizer step, so the k-th
// optimizer step (k = 1, 2, ...) runs with the lr of last_batch_iteration = k-1: scheduled_lr(s, lr, k-1).
#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/base/error.h"
#include "engine/optim/optimizer.h"

namespace zt {
namespace {

// DeepSpeed clamps warmup_num_steps to at least 2 so that log(warmup_num_steps) is not 0.
double warmup_fraction(const SchedulerConfig& s, int64_t step) {
  double warmup_steps = static_cast<double>(std::max<int64_t>(2, s.warmup_num_steps));
  if (s.warmup_type == WarmupType::Log) return std::log(static_cast<double>(step) + 1.0) / std::log(warmup_steps);
  return static_cast<double>(step) / warmup_steps;
}

}  // namespace

double scheduled_lr(const SchedulerConfig& s, double base_lr, int64_t step) {
  if (step < 0) throw RuntimeError("scheduled_lr: negative step " + std::to_string(step));
  int64_t warmup_steps = std::max<int64_t>(2, s.warmup_num_steps);
  switch (s.type) {
    case SchedulerType::None:
      return base_lr;
    case SchedulerType::WarmupLR: {
      double gamma = step < warmup_steps ? warmup_fraction(s, step) : 1.0;
      return s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma;
    }
    case SchedulerType::WarmupDecayLR: {
      double gamma;
      if (step < warmup_steps) {
        gamma = warmup_fraction(s, step);
      } else {
        gamma = std::max(0.0, static_cast<double>(s.total_num_steps - step) /
                                  std::max(1.0, static_cast<double>(s.total_num_steps - warmup_steps)));
      }
      return s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma;
    }
    case SchedulerType::WarmupCosineLR: {
      // DeepSpeed sets the lr to 0 when it constructs this scheduler (get_lr() before the first step() returns
      // 0), and the first optimizer step runs with that value.
      if (step == 0) return 0.0;
      double ratio;
      if (step < warmup_steps) {
        ratio = s.warmup_min_ratio + warmup_fraction(s, step) * (1.0 - s.warmup_min_ratio);
      } else {
        int64_t cos_total = s.total_num_steps - warmup_steps;
        if (cos_total <= 0) {
          throw ConfigError("scheduler WarmupCosineLR: total_num_steps (" + std::to_string(s.total_num_steps) +
                            ") must exceed warmup_num_steps (" + std::to_string(warmup_steps) + ")");
        }
        double progress = static_cast<double>(step - warmup_steps + 1) / static_cast<double>(cos_total);
        double cosine = (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
        ratio = std::max(0.0, s.cos_min_ratio + (1.0 - s.cos_min_ratio) * cosine);
      }
      return base_lr * ratio;
    }
  }
  throw ConfigError("scheduled_lr: unknown scheduler type");
}

}  // namespace zt
