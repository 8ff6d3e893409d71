#pragma once
// Token + learned position embedding: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].
#include <cstdint>

namespace zt::cpu {

// out: [B,T,C]; inp: [B,T] token ids (must be < vocab, unchecked here); wte: [V,C]; wpe: [>=T,C].
template <typename Scalar>
void encoder_forward(Scalar* out, const int32_t* inp, const Scalar* wte, const Scalar* wpe, int B, int T, int C);

// ACCUMULATES (+=) into dwte and dwpe. Threads own disjoint channel ranges, so the sum order (and the result) does
// not depend on the thread count even when a token repeats.
template <typename Scalar>
void encoder_backward(Scalar* dwte, Scalar* dwpe, const Scalar* dout, const int32_t* inp, int B, int T, int C);

}  // namespace zt::cpu
