#include "kernels/cuda/cross_entropy.h"

#include <cstddef>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/storage.cuh"

namespace zt::cuda {
namespace {

constexpr int kBlock = 512;

// One block per row: max, then the sum of exponentials relative to it.
template <typename T>
__global__ void cross_entropy_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                                             int V) {
  const size_t n = blockIdx.x;
  const T* z = logits + n * V;
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, load_f32(z[v]));
  m = block_max(m);
  float s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(load_f32(z[v]) - m);
  const float l = m + logf(block_sum(s));
  if (threadIdx.x == 0) {
    const int target = targets[n];
    lse[n] = l;
    losses[n] = (target >= 0 && target < V) ? l - load_f32(z[target]) : NAN;
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                              float dloss, int V) {
  const size_t n = blockIdx.x;
  const T* z = logits + n * V;
  T* dz = dlogits + n * V;
  const float l = lse[n];
  const int target = targets[n];
  // Each element is read and written by the same thread, so dlogits may alias logits.
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(load_f32(z[v]) - l);
    dz[v] = store_as<T>((p - (v == target ? 1.0f : 0.0f)) * dloss);
  }
}

}  // namespace

template <typename T>
void cross_entropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V,
                           cudaStream_t stream) {
  if (N == 0) return;
  cross_entropy_forward_kernel<<<N, kBlock, 0, stream>>>(losses, lse, logits, targets, V);
  ZT_CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, float dloss, int N,
                            int V, cudaStream_t stream) {
  if (N == 0) return;
  cross_entropy_backward_kernel<<<N, kBlock, 0, stream>>>(dlogits, logits, lse, targets, dloss, V);
  ZT_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

#define ZT_INSTANTIATE(T)                                                                                          \
  template void cross_entropy_forward<T>(float*, float*, const T*, const int32_t*, int, int, cudaStream_t);      \
  template void cross_entropy_backward<T>(T*, const T*, const float*, const int32_t*, float, int, int, cudaStream_t);
ZT_FOR_STORAGE_TYPES(ZT_INSTANTIATE)
#undef ZT_INSTANTIATE

}  // namespace zt::cuda
