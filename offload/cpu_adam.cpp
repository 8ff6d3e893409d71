// CPU Adam dispatch: the ISA once per process, the step's constants in double as the reference computes them, the
// partition split over threads in cache-line-aligned spans (an element's update depends only on itself, so any
// split gives the same bits).
#include "offload/cpu_adam.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/base/error.h"
#include "offload/cpu_adam_kernels.h"

namespace zt::offload {
namespace {

using SpanKernel = void (*)(float*, const float*, float*, float*, size_t, const detail::AdamScalars&);

SpanKernel kernel_for(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512:
      return detail::adam_span_avx512;
    case CpuIsa::Avx2:
      return detail::adam_span_avx2;
    case CpuIsa::Scalar:
      break;
  }
  return detail::adam_span_scalar;
}

CpuIsa detect_isa() {
  CpuIsa best = cpu_supports(CpuIsa::Avx512) ? CpuIsa::Avx512
                : cpu_supports(CpuIsa::Avx2) ? CpuIsa::Avx2
                                             : CpuIsa::Scalar;
  const char* env = std::getenv("ZT_CPU_ADAM_ISA");
  if (env == nullptr || *env == '\0') return best;
  std::string want = env;
  CpuIsa isa;
  if (want == "scalar") {
    isa = CpuIsa::Scalar;
  } else if (want == "avx2") {
    isa = CpuIsa::Avx2;
  } else if (want == "avx512") {
    isa = CpuIsa::Avx512;
  } else {
    throw ConfigError("ZT_CPU_ADAM_ISA must be scalar, avx2 or avx512, got '" + want + "'");
  }
  if (!cpu_supports(isa)) throw RuntimeError("ZT_CPU_ADAM_ISA=" + want + ": this CPU does not support it");
  return isa;
}

void check_step(int64_t step) {
  if (step < 1) throw RuntimeError("cpu_adam: step counts from 1, got " + std::to_string(step));
}

detail::AdamScalars scalars_for(const CpuAdamHyper& h, int64_t step, bool decay) {
  double bias_correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  double bias_correction2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  detail::AdamScalars s{};
  s.beta1 = static_cast<float>(h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta1 = 1.0f - s.beta1;
  s.one_minus_beta2 = 1.0f - s.beta2;
  s.eps = static_cast<float>(h.eps);
  s.step_size = static_cast<float>(h.lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.l2_decay = 0.0f;
  s.decoupled_factor = 1.0f;
  if (decay && h.weight_decay != 0.0) {
    if (h.adamw_mode) {
      s.decoupled_factor = static_cast<float>(1.0 - h.lr * h.weight_decay);
    } else {
      s.l2_decay = static_cast<float>(h.weight_decay);
    }
  }
  return s;
}

// Below this many elements a thread costs more than it saves.
constexpr size_t kMinPerThread = 32768;

void run_spans(SpanKernel kernel, int threads, float* p, const float* g, float* m, float* v, size_t n,
               const detail::AdamScalars& s) {
  size_t t = static_cast<size_t>(threads > 0 ? threads : cpu_adam_threads());
  t = std::max<size_t>(1, std::min(t, n / kMinPerThread));
  if (t == 1) {
    kernel(p, g, m, v, n, s);
    return;
  }
  // Spans start on 16-float (64-byte) boundaries so no two threads share a cache line.
  size_t per = (n / t + 15) / 16 * 16;
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (size_t k = 1; k < t; k++) {
    size_t begin = std::min(n, k * per), end = k + 1 == t ? n : std::min(n, (k + 1) * per);
    if (begin >= end) break;
    pool.emplace_back(kernel, p + begin, g + begin, m + begin, v + begin, end - begin, std::cref(s));
  }
  kernel(p, g, m, v, std::min(n, per), s);
  for (auto& th : pool) th.join();
}

}  // namespace

bool cpu_supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512:
      return __builtin_cpu_supports("avx512f");
    case CpuIsa::Avx2:
      return __builtin_cpu_supports("avx2");
    case CpuIsa::Scalar:
      return true;
  }
  return false;
}

CpuIsa cpu_adam_isa() {
  static const CpuIsa isa = detect_isa();
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512:
      return "avx512";
    case CpuIsa::Avx2:
      return "avx2";
    case CpuIsa::Scalar:
      break;
  }
  return "scalar";
}

CpuAdamHyper cpu_adam_hyper(const OptimizerConfig& cfg, double lr) {
  CpuAdamHyper h;
  h.lr = lr;
  h.beta1 = cfg.beta1;
  h.beta2 = cfg.beta2;
  h.eps = cfg.eps;
  h.weight_decay = cfg.weight_decay;
  h.adamw_mode = cfg.type == OptimizerType::AdamW || cfg.adam_w_mode;
  return h;
}

int cpu_adam_threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env != nullptr) {
    int t = std::atoi(env);
    if (t > 0) return t;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void cpu_adam_step_with(CpuIsa isa, int threads, float* params, const float* grads, float* exp_avg,
                        float* exp_avg_sq, size_t n, const CpuAdamHyper& hyper, int64_t step, bool decay) {
  check_step(step);
  if (!cpu_supports(isa)) throw RuntimeError(std::string("cpu_adam: this CPU does not support ") + cpu_isa_name(isa));
  run_spans(kernel_for(isa), threads, params, grads, exp_avg, exp_avg_sq, n, scalars_for(hyper, step, decay));
}

void cpu_adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, size_t n,
                   const CpuAdamHyper& hyper, int64_t step, bool decay) {
  cpu_adam_step_with(cpu_adam_isa(), 0, params, grads, exp_avg, exp_avg_sq, n, hyper, step, decay);
}

void cpu_adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, size_t n,
                   const CpuAdamHyper& hyper, int64_t step, const std::vector<DecayRange>& ranges) {
  check_step(step);
  size_t at = 0;
  auto update = [&](size_t begin, size_t end, bool decay) {
    if (end > begin) {
      cpu_adam_step(params + begin, grads + begin, exp_avg + begin, exp_avg_sq + begin, end - begin, hyper, step,
                    decay);
    }
  };
  for (size_t i = 0; i < ranges.size(); i++) {
    const DecayRange& r = ranges[i];
    if (r.begin > r.end || r.end > n || r.begin < at) {
      throw RuntimeError("cpu_adam: decay range " + std::to_string(i) + " [" + std::to_string(r.begin) + ", " +
                         std::to_string(r.end) + ") is out of order, overlapping or beyond the partition of " +
                         std::to_string(n) + " elements");
    }
    update(at, r.begin, false);
    update(r.begin, r.end, r.decay);
    at = r.end;
  }
  update(at, n, false);
}

}  // namespace zt::offload
