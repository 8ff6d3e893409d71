#include "kernels/cuda/grad_update.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/storage.cuh"

namespace zt::cuda {
namespace {

constexpr int kBlock = 256;

template <typename G>
__global__ void adam_kernel(float* p, const G* grad, float* m, float* v, size_t n, AdamStepScalars s) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  // The CPU formula, operation for operation (fmaf contraction is turned off with __fmul_rn / __fadd_rn so that
  // both sides round the same way).
  const float g = __fadd_rn(load_f32(grad[i]), __fmul_rn(s.l2_decay, p[i]));
  const float param = __fmul_rn(p[i], s.decoupled_factor);
  const float mi = __fadd_rn(__fmul_rn(m[i], s.beta1), __fmul_rn(1.0f - s.beta1, g));
  const float vi = __fadd_rn(__fmul_rn(v[i], s.beta2), __fmul_rn(1.0f - s.beta2, __fmul_rn(g, g)));
  m[i] = mi;
  v[i] = vi;
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bias_correction2_sqrt), s.eps);
  p[i] = __fsub_rn(param, __fmul_rn(s.step_size, __fdiv_rn(mi, denom)));
}

// The CPU formula, operation for operation and without contraction, as adam_kernel.
template <typename G>
__global__ void sgd_kernel(float* p, const G* grad, float* buf, size_t n, float lr, float momentum, float wd) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float d = __fadd_rn(load_f32(grad[i]), __fmul_rn(wd, p[i]));
  if (momentum != 0.0f) {
    const float b = __fadd_rn(__fmul_rn(momentum, buf[i]), d);
    buf[i] = b;
    p[i] = __fsub_rn(p[i], __fmul_rn(lr, b));
  } else {
    p[i] = __fsub_rn(p[i], __fmul_rn(lr, d));
  }
}

template <typename T>
__global__ void sum_squares_partials_kernel(float* partials, const T* x, size_t n) {
  float acc = 0.0f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float v = load_f32(x[i]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* out, const float* partials, int count) {
  if (threadIdx.x != 0) return;
  double s = 0.0;
  for (int i = 0; i < count; i++) s += partials[i];
  *out = s;
}

template <typename T>
__global__ void scale_kernel(T* x, size_t n, float factor) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) x[i] = store_as<T>(load_f32(x[i]) * factor);
}

template <typename T>
__global__ void find_nonfinite_kernel(int* flag, const T* x, size_t n) {
  bool bad = false;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    bad |= !isfinite(load_f32(x[i]));
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

unsigned int grid_stride_blocks(size_t n) {
  const unsigned int blocks = grid_for(n, kBlock);
  return blocks < kSumSquaresPartials ? blocks : kSumSquaresPartials;
}

}  // namespace

template <typename G>
void adam_update(float* params, const G* grads, float* exp_avg, float* exp_avg_sq, size_t n, const AdamStepScalars& s,
                 cudaStream_t stream) {
  if (n == 0) return;
  adam_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(params, grads, exp_avg, exp_avg_sq, n, s);
  ZT_CUDA_CHECK_LAUNCH("adam_kernel");
}

template <typename G>
void sgd_update(float* params, const G* grads, float* momentum_buffer, size_t n, float lr, float momentum,
                float weight_decay, cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(params, grads, momentum_buffer, n, lr, momentum,
                                                          weight_decay);
  ZT_CUDA_CHECK_LAUNCH("sgd_kernel");
}

template <typename T>
void sum_squares(double* out, float* partials, const T* x, size_t n, cudaStream_t stream) {
  const unsigned int blocks = n == 0 ? 1 : grid_stride_blocks(n);
  sum_squares_partials_kernel<<<blocks, kBlock, 0, stream>>>(partials, x, n);
  ZT_CUDA_CHECK_LAUNCH("sum_squares_partials_kernel");
  sum_partials_kernel<<<1, 32, 0, stream>>>(out, partials, (int)blocks);
  ZT_CUDA_CHECK_LAUNCH("sum_partials_kernel");
}

template <typename T>
void scale_inplace(T* x, size_t n, float factor, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(x, n, factor);
  ZT_CUDA_CHECK_LAUNCH("scale_kernel");
}

template <typename T>
void find_nonfinite(int* flag, const T* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  find_nonfinite_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(flag, x, n);
  ZT_CUDA_CHECK_LAUNCH("find_nonfinite_kernel");
}

#define ZT_INSTANTIATE(T)                                                                                          \
  template void adam_update<T>(float*, const T*, float*, float*, size_t, const AdamStepScalars&, cudaStream_t);  \
  template void sgd_update<T>(float*, const T*, float*, size_t, float, float, float, cudaStream_t);              \
  template void sum_squares<T>(double*, float*, const T*, size_t, cudaStream_t);                                 \
  template void scale_inplace<T>(T*, size_t, float, cudaStream_t);                                               \
  template void find_nonfinite<T>(int*, const T*, size_t, cudaStream_t);
ZT_FOR_STORAGE_TYPES(ZT_INSTANTIATE)
#undef ZT_INSTANTIATE

}  // namespace zt::cuda
