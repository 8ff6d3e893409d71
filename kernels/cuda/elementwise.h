#pragma once
// Element-wise and gather kernels of GPT-2 on the GPU, mirroring kernels/cpu (encoder, GELU, residual) plus the
// fp32 <-> bf16/fp16 casts and roundings. Storage T is float, __nv_bfloat16 or __half; arithmetic is fp32. All calls
// are asynchronous on `stream` and check their launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace zt::cuda {

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]; out: [B,T,C]; inp: [B,T] (ids < vocab, unchecked as on the CPU).
template <typename T>
void encoder_forward(T* out, const int32_t* inp, const T* wte, const T* wpe, int B, int T_, int C,
                     cudaStream_t stream = nullptr);
// ACCUMULATES (+=) into dwte and dwpe. Deterministic (no atomics): each thread owns one channel of dwte and walks
// the positions in order, as the CPU kernel does.
template <typename T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const int32_t* inp, int B, int T_, int C,
                      cudaStream_t stream = nullptr);

// GELU, tanh form; dinp may alias dout.
template <typename T>
void gelu_forward(T* out, const T* inp, size_t n, cudaStream_t stream = nullptr);
template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n, cudaStream_t stream = nullptr);

// out = inp1 + inp2; backward ACCUMULATES dout into dinp1 and dinp2.
template <typename T>
void residual_forward(T* out, const T* inp1, const T* inp2, size_t n, cudaStream_t stream = nullptr);
template <typename T>
void residual_backward(T* dinp1, T* dinp2, const T* dout, size_t n, cudaStream_t stream = nullptr);

// The bias gradient of a matmul: ACCUMULATES (+=) the column sums of dout [N,OC] into dbias [OC], in a fixed order.
template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC, cudaStream_t stream = nullptr);

// Round-to-nearest-even conversions, instantiated for float -> bf16/fp16, bf16/fp16 -> float and float -> float.
template <typename Dst, typename Src>
void cast(Dst* out, const Src* in, size_t n, cudaStream_t stream = nullptr);
// x[i] = the nearest value of T (round to nearest even), kept in fp32: a 16-bit rounding without a 16-bit buffer.
// Instantiated for bf16 and fp16.
template <typename T>
void round_to_storage(float* x, size_t n, cudaStream_t stream = nullptr);

}  // namespace zt::cuda
