#pragma once
// LayerNorm over the last dimension, eps 1e-5 (as Hugging Face GPT-2).

namespace zt::cpu {

// out: [N,C]; mean, rstd: [N] (kept for backward); inp: [N,C]; weight, bias: [C].
template <typename Scalar>
void layernorm_forward(Scalar* out, Scalar* mean, Scalar* rstd, const Scalar* inp, const Scalar* weight,
                       const Scalar* bias, int N, int C);

// ACCUMULATES (+=) into dinp, dweight and dbias (dinp is the residual stream's gradient, which the LayerNorm adds
// to). dout is not modified.
template <typename Scalar>
void layernorm_backward(Scalar* dinp, Scalar* dweight, Scalar* dbias, const Scalar* dout, const Scalar* inp,
                        const Scalar* weight, const Scalar* mean, const Scalar* rstd, int N, int C);

}  // namespace zt::cpu
