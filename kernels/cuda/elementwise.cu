#include "kernels/cuda/elementwise.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/storage.cuh"

namespace zt::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void encoder_forward_kernel(T* out, const int32_t* inp, const T* wte, const T* wpe, int T_, int C,
                                       size_t total) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= total) return;
  const size_t bt = i / C;
  const int c = (int)(i % C), t = (int)(bt % T_);
  out[i] = store_as<T>(load_f32(wte[(size_t)inp[bt] * C + c]) + load_f32(wpe[(size_t)t * C + c]));
}

// One thread per channel walks every position in order: repeated tokens add into the same dwte row in a fixed order.
template <typename T>
__global__ void encoder_backward_wte_kernel(T* dwte, const T* dout, const int32_t* inp, int BT, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int bt = 0; bt < BT; bt++) {
    T* d = dwte + (size_t)inp[bt] * C + c;
    *d = store_as<T>(load_f32(*d) + load_f32(dout[(size_t)bt * C + c]));
  }
}

template <typename T>
__global__ void encoder_backward_wpe_kernel(T* dwpe, const T* dout, int B, int T_, int C) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= (size_t)T_ * C) return;
  float s = load_f32(dwpe[i]);
  for (int b = 0; b < B; b++) s += load_f32(dout[(size_t)b * T_ * C + i]);
  dwpe[i] = store_as<T>(s);
}

constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;

template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = load_f32(inp[i]);
  out[i] = store_as<T>(0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x))));
}

template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = load_f32(inp[i]);
  const float th = tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x));
  const float du_dx = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
  const float local = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du_dx;
  dinp[i] = store_as<T>(local * load_f32(dout[i]));
}

template <typename T>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = store_as<T>(load_f32(a[i]) + load_f32(b[i]));
}

template <typename T>
__global__ void residual_backward_kernel(T* da, T* db, const T* dout, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float d = load_f32(dout[i]);
  da[i] = store_as<T>(load_f32(da[i]) + d);
  db[i] = store_as<T>(load_f32(db[i]) + d);
}

constexpr int kColumns = 32, kRowLanes = 8;

// Block (kColumns, kRowLanes): lane y sums rows y, y + kRowLanes, ... of its column, then the lanes are added in
// lane order.
template <typename T>
__global__ void bias_backward_kernel(T* dbias, const T* dout, int N, int OC) {
  __shared__ float part[kRowLanes][kColumns];
  const int c = blockIdx.x * kColumns + threadIdx.x;
  float s = 0.0f;
  if (c < OC)
    for (int n = threadIdx.y; n < N; n += kRowLanes) s += load_f32(dout[(size_t)n * OC + c]);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || c >= OC) return;
  float total = 0.0f;
  for (int y = 0; y < kRowLanes; y++) total += part[y][threadIdx.x];
  dbias[c] = store_as<T>(load_f32(dbias[c]) + total);
}

template <typename Dst, typename Src>
__global__ void cast_kernel(Dst* out, const Src* in, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = store_as<Dst>(load_f32(in[i]));
}

template <typename T>
__global__ void round_to_storage_kernel(float* x, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) x[i] = load_f32(store_as<T>(x[i]));
}

}  // namespace

template <typename T>
void encoder_forward(T* out, const int32_t* inp, const T* wte, const T* wpe, int B, int T_, int C,
                     cudaStream_t stream) {
  const size_t total = (size_t)B * T_ * C;
  if (total == 0) return;
  encoder_forward_kernel<<<grid_for(total, kBlock), kBlock, 0, stream>>>(out, inp, wte, wpe, T_, C, total);
  ZT_CUDA_CHECK_LAUNCH("encoder_forward_kernel");
}

template <typename T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const int32_t* inp, int B, int T_, int C,
                      cudaStream_t stream) {
  if ((size_t)B * T_ * C == 0) return;
  encoder_backward_wte_kernel<<<grid_for(C, 64), 64, 0, stream>>>(dwte, dout, inp, B * T_, C);
  ZT_CUDA_CHECK_LAUNCH("encoder_backward_wte_kernel");
  encoder_backward_wpe_kernel<<<grid_for((size_t)T_ * C, kBlock), kBlock, 0, stream>>>(dwpe, dout, B, T_, C);
  ZT_CUDA_CHECK_LAUNCH("encoder_backward_wpe_kernel");
}

template <typename T>
void gelu_forward(T* out, const T* inp, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(out, inp, n);
  ZT_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n);
  ZT_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

template <typename T>
void residual_forward(T* out, const T* inp1, const T* inp2, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  residual_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(out, inp1, inp2, n);
  ZT_CUDA_CHECK_LAUNCH("residual_forward_kernel");
}

template <typename T>
void residual_backward(T* dinp1, T* dinp2, const T* dout, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  residual_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(dinp1, dinp2, dout, n);
  ZT_CUDA_CHECK_LAUNCH("residual_backward_kernel");
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC, cudaStream_t stream) {
  if (N == 0 || OC == 0) return;
  bias_backward_kernel<<<grid_for(OC, kColumns), dim3(kColumns, kRowLanes), 0, stream>>>(dbias, dout, N, OC);
  ZT_CUDA_CHECK_LAUNCH("bias_backward_kernel");
}

template <typename Dst, typename Src>
void cast(Dst* out, const Src* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(out, in, n);
  ZT_CUDA_CHECK_LAUNCH("cast_kernel");
}

template <typename T>
void round_to_storage(float* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  round_to_storage_kernel<T><<<grid_for(n, kBlock), kBlock, 0, stream>>>(x, n);
  ZT_CUDA_CHECK_LAUNCH("round_to_storage_kernel");
}

#define ZT_INSTANTIATE(T)                                                                                      \
  template void encoder_forward<T>(T*, const int32_t*, const T*, const T*, int, int, int, cudaStream_t);       \
  template void encoder_backward<T>(T*, T*, const T*, const int32_t*, int, int, int, cudaStream_t);            \
  template void gelu_forward<T>(T*, const T*, size_t, cudaStream_t);                                           \
  template void gelu_backward<T>(T*, const T*, const T*, size_t, cudaStream_t);                                \
  template void residual_forward<T>(T*, const T*, const T*, size_t, cudaStream_t);                             \
  template void residual_backward<T>(T*, T*, const T*, size_t, cudaStream_t);                                  \
  template void bias_backward<T>(T*, const T*, int, int, cudaStream_t);                                         \
  template void cast<T, float>(T*, const float*, size_t, cudaStream_t);
ZT_FOR_STORAGE_TYPES(ZT_INSTANTIATE)
#undef ZT_INSTANTIATE
template void cast<float, __nv_bfloat16>(float*, const __nv_bfloat16*, size_t, cudaStream_t);
template void cast<float, __half>(float*, const __half*, size_t, cudaStream_t);
template void round_to_storage<__nv_bfloat16>(float*, size_t, cudaStream_t);
template void round_to_storage<__half>(float*, size_t, cudaStream_t);

}  // namespace zt::cuda
