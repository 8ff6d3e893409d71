#pragma once
// LayerNorm over the last dimension on the GPU (eps 1e-5), mirroring kernels/cpu/layernorm.h. Storage T is float,
// __nv_bfloat16 or __half; mean and rstd are kept in fp32 for the backward.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace zt::cuda {

// out: [N,C]; mean, rstd: [N]; inp: [N,C]; weight, bias: [C]. Two-pass variance, as on the CPU.
template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                       cudaStream_t stream = nullptr);
// ACCUMULATES (+=) into dinp, dweight and dbias. The parameter gradients are column sums in a fixed order (no
// atomics), so results are the same on every run.
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t stream = nullptr);

}  // namespace zt::cuda
