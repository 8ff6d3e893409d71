#pragma once
// Causal multi-head self-attention on a fused qkv tensor (Hugging Face c_attn output: q, k, v each [C], head h at
// channels h*hd .. (h+1)*hd of each), softmax(q k^T / sqrt(hd)) over positions t2 <= t.

namespace zt::cpu {

// out: [B,T,C]; att: [B,NH,T,T] softmax probabilities kept for backward (entries t2 > t are left unwritten and
// never read); qkv: [B,T,3C].
template <typename Scalar>
void attention_forward(Scalar* out, Scalar* att, const Scalar* qkv, int B, int T, int C, int NH);

// OVERWRITES dqkv [B,T,3C] (each (batch, head) task zeroes and then fills its own slice, so no separate memset and
// no races); dout is [B,T,C]. Needs qkv and att from the forward.
template <typename Scalar>
void attention_backward(Scalar* dqkv, const Scalar* dout, const Scalar* qkv, const Scalar* att, int B, int T, int C,
                        int NH);

}  // namespace zt::cpu
