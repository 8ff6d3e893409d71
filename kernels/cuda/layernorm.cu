#include "kernels/cuda/layernorm.h"

#include <cstddef>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/storage.cuh"

namespace zt::cuda {
namespace {

constexpr int kRowBlock = 256;  // threads per row
constexpr int kColumns = 32;    // columns per block of the parameter-gradient kernel
constexpr int kRowLanes = 8;    // row lanes per column there

// One block per row.
template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                                         const T* bias, int C) {
  const size_t row = blockIdx.x;
  const T* x = inp + row * C;
  float s = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += load_f32(x[c]);
  const float m = block_sum(s) / C;
  float v = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = load_f32(x[c]) - m;
    v += d * d;
  }
  const float r = rsqrtf(block_sum(v) / C + 1e-5f);
  T* y = out + row * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    y[c] = store_as<T>((load_f32(x[c]) - m) * r * load_f32(weight[c]) + load_f32(bias[c]));
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// dx += rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)) with g = dout * weight; one block per row.
template <typename T>
__global__ void layernorm_backward_input_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                                const float* mean, const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const T* x = inp + row * C;
  const T* dy = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float g = load_f32(dy[c]) * load_f32(weight[c]);
    g_sum += g;
    gx_sum += g * (load_f32(x[c]) - m) * r;
  }
  const float g_mean = block_sum(g_sum) / C;
  const float gx_mean = block_sum(gx_sum) / C;
  T* dx = dinp + row * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xhat = (load_f32(x[c]) - m) * r;
    const float g = load_f32(dy[c]) * load_f32(weight[c]);
    dx[c] = store_as<T>(load_f32(dx[c]) + r * (g - g_mean - xhat * gx_mean));
  }
}

// Block (kColumns, kRowLanes): lane y sums rows y, y + kRowLanes, ... of its column; the lanes are then added in
// lane order.
template <typename T>
__global__ void layernorm_backward_params_kernel(T* dweight, T* dbias, const T* dout, const T* inp, const float* mean,
                                                 const float* rstd, int N, int C) {
  __shared__ float dw_part[kRowLanes][kColumns];
  __shared__ float db_part[kRowLanes][kColumns];
  const int c = blockIdx.x * kColumns + threadIdx.x;
  float dw = 0.0f, db = 0.0f;
  if (c < C) {
    for (int n = threadIdx.y; n < N; n += kRowLanes) {
      const size_t i = (size_t)n * C + c;
      const float dy = load_f32(dout[i]);
      dw += dy * (load_f32(inp[i]) - mean[n]) * rstd[n];
      db += dy;
    }
  }
  dw_part[threadIdx.y][threadIdx.x] = dw;
  db_part[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float w = 0.0f, b = 0.0f;
    for (int y = 0; y < kRowLanes; y++) {
      w += dw_part[y][threadIdx.x];
      b += db_part[y][threadIdx.x];
    }
    dweight[c] = store_as<T>(load_f32(dweight[c]) + w);
    dbias[c] = store_as<T>(load_f32(dbias[c]) + b);
  }
}

}  // namespace

template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                       cudaStream_t stream) {
  if (N == 0) return;
  layernorm_forward_kernel<<<N, kRowBlock, 0, stream>>>(out, mean, rstd, inp, weight, bias, C);
  ZT_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  if (N == 0) return;
  layernorm_backward_input_kernel<<<N, kRowBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, C);
  ZT_CUDA_CHECK_LAUNCH("layernorm_backward_input_kernel");
  const dim3 block(kColumns, kRowLanes);
  layernorm_backward_params_kernel<<<grid_for(C, kColumns), block, 0, stream>>>(dweight, dbias, dout, inp, mean,
                                                                                 rstd, N, C);
  ZT_CUDA_CHECK_LAUNCH("layernorm_backward_params_kernel");
}

#define ZT_INSTANTIATE(T)                                                                                        \
  template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int, int, cudaStream_t); \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const float*, const float*, int, \
                                      int, cudaStream_t);
ZT_FOR_STORAGE_TYPES(ZT_INSTANTIATE)
#undef ZT_INSTANTIATE

}  // namespace zt::cuda
