#pragma once
// Adam / AdamW over an fp32 partition held in host memory (CPU and NVMe optimizer offload). Vectorised with AVX2 or
// AVX-512 chosen at run time, multithreaded, with a scalar fallback. The arithmetic is the reference optimizer's
// (engine/optim AdamOptimizer) operation for operation in float, without FMA contraction, so the results are bitwise
// equal to it: offloading the optimizer never changes a training run.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/optim/optimizer.h"  // DecayRange

namespace zt::offload {

enum class CpuIsa { Scalar, Avx2, Avx512 };

// The widest ISA this CPU supports (__builtin_cpu_supports), unless ZT_CPU_ADAM_ISA=scalar|avx2|avx512 asks for
// a narrower one (a wider one than the CPU has is refused with a RuntimeError). Decided once per process.
CpuIsa cpu_adam_isa();
const char* cpu_isa_name(CpuIsa isa);
bool cpu_supports(CpuIsa isa);

struct CpuAdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool adamw_mode = true;  // true: decoupled decay (p *= 1 - lr*wd); false: L2 (g += wd*p)
};

// The hyperparameters of the configured Adam/AdamW at learning rate lr (AdamW, or Adam with adam_w_mode: decoupled).
CpuAdamHyper cpu_adam_hyper(const OptimizerConfig& cfg, double lr);

// One update of params[0..n) (step counts from 1, for the bias corrections). decay: whether weight_decay applies.
void cpu_adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, size_t n,
                   const CpuAdamHyper& hyper, int64_t step, bool decay);
// The same with per-range decay, exactly like Optimizer::step: ranges sorted and non-overlapping within [0, n); the
// gaps are updated without decay. Throws RuntimeError for bad ranges or step < 1.
void cpu_adam_step(float* params, const float* grads, float* exp_avg, float* exp_avg_sq, size_t n,
                   const CpuAdamHyper& hyper, int64_t step, const std::vector<DecayRange>& ranges);
// Explicit ISA and thread count (threads <= 0: the default, see cpu_adam_threads()); for tests and benchmarks.
void cpu_adam_step_with(CpuIsa isa, int threads, float* params, const float* grads, float* exp_avg,
                        float* exp_avg_sq, size_t n, const CpuAdamHyper& hyper, int64_t step, bool decay);
// Threads used by default: OMP_NUM_THREADS when set, else the hardware concurrency.
int cpu_adam_threads();

}  // namespace zt::offload
