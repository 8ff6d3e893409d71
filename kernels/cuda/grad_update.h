#pragma once
// Kernels over flat parameter / gradient buffers: the Adam(W) and SGD updates, the sum of squares behind the global
// gradient norm, scaling (loss-scale unscaling, clipping) and the inf/NaN check of dynamic loss scaling.
// Gradients may be stored as float, __nv_bfloat16 or __half; parameters and optimizer state are fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "engine/optim/adam_step.h"

namespace zt::cuda {

// Updates params/exp_avg/exp_avg_sq[0..n) in place with the same float arithmetic as the CPU optimizer.
template <typename G>
void adam_update(float* params, const G* grads, float* exp_avg, float* exp_avg_sq, size_t n, const AdamStepScalars& s,
                 cudaStream_t stream = nullptr);

// SGD as engine/optim's (torch.optim.SGD, dampening 0, no Nesterov), with its float arithmetic: d = g + wd p; with
// momentum != 0: buf = momentum buf + d, p -= lr buf (a zero buffer gives torch's first step); without: p -= lr d
// (the buffer is not touched and may be nullptr).
template <typename G>
void sgd_update(float* params, const G* grads, float* momentum_buffer, size_t n, float lr, float momentum,
                float weight_decay, cudaStream_t stream = nullptr);

// Blocks of the first pass of sum_squares: the caller provides partials of this many floats.
constexpr int kSumSquaresPartials = 1024;
// *out (device) = sum of x[i]^2: fp32 per-thread and per-block sums, then the block partials added in double in a
// fixed order, so the result is the same on every run. The global norm is sqrt(allreduce(sum over partitions)).
template <typename T>
void sum_squares(double* out, float* partials, const T* x, size_t n, cudaStream_t stream = nullptr);

// x *= factor.
template <typename T>
void scale_inplace(T* x, size_t n, float factor, cudaStream_t stream = nullptr);

// Sets *flag (device int) to 1 when any of x[0..n) is inf or NaN; never clears it, so one flag can collect the
// check of several buffers (zero it before the first).
template <typename T>
void find_nonfinite(int* flag, const T* x, size_t n, cudaStream_t stream = nullptr);

}  // namespace zt::cuda
