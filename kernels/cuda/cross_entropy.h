#pragma once
// Fused, numerically stable softmax + cross-entropy over the vocabulary on the GPU, mirroring
// kernels/cpu/cross_entropy.h. Logits are stored as T (float, __nv_bfloat16, __half); losses and lse are fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace zt::cuda {

// logits: [N,V]; targets: [N]. losses[n] = lse[n] - logits[n, targets[n]]; a target outside [0, V) gives a NaN
// loss (and is then caught by the overflow check) instead of reading out of bounds. The mean is the caller's sum.
template <typename T>
void cross_entropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V,
                           cudaStream_t stream = nullptr);
// OVERWRITES dlogits [N,V] with dloss * (softmax(logits) - onehot(target)); dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, float dloss, int N,
                            int V, cudaStream_t stream = nullptr);

}  // namespace zt::cuda
