#pragma once
// Causal multi-head self-attention on the GPU over the fused qkv tensor, mirroring kernels/cpu/attention.h
// (q, k, v each [C] in every [3C] row; head h at channels h*hd .. (h+1)*hd). Storage T is float, __nv_bfloat16 or
// __half; scores, probabilities and sums are fp32.
//
// Two forwards:
//  - reference: keeps the softmax probabilities att [B,NH,T,T] for the backward, exactly like the CPU kernel;
//  - flash: online softmax over key tiles held in shared memory; keeps only lse [B,NH,T] (log-sum-exp of the
//    scaled scores), so a layer's saved state is O(T) instead of O(T^2). Head dims 32 and 64 (GPT-2 uses 64).
// Both backwards OVERWRITE dqkv and need a transient scratch buffer (attention_backward_scratch_floats), which
// one buffer can serve for every layer.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace zt::cuda {

// out: [B,T,C]; att: [B,NH,T,T] (entries t2 > t are left unwritten and never read); qkv: [B,T,3C].
template <typename T>
void attention_forward(T* out, float* att, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream = nullptr);
template <typename T>
void attention_backward(T* dqkv, float* scratch, const T* dout, const T* qkv, const float* att, int B, int T_, int C,
                        int NH, cudaStream_t stream = nullptr);

bool flash_attention_supports(int head_dim);
// Throws zt::RuntimeError naming the head dim when flash_attention_supports(C / NH) is false.
template <typename T>
void attention_forward_flash(T* out, float* lse, const T* qkv, int B, int T_, int C, int NH,
                             cudaStream_t stream = nullptr);
// Recomputes the probabilities from qkv and lse.
template <typename T>
void attention_backward_flash(T* dqkv, float* scratch, const T* dout, const T* qkv, const float* lse, int B, int T_,
                              int C, int NH, cudaStream_t stream = nullptr);

// Floats of scratch the backward needs: B*NH*T*T score gradients, plus as many recomputed probabilities for flash.
size_t attention_backward_scratch_floats(int B, int T_, int NH, bool flash);

}  // namespace zt::cuda
