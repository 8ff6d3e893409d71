#pragma once
// GELU, tanh form (Hugging Face "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

namespace zt::cpu {

template <typename Scalar>
void gelu_forward(Scalar* out, const Scalar* inp, int N);

// OVERWRITES dinp = gelu'(inp) * dout; dinp may alias dout (in place).
template <typename Scalar>
void gelu_backward(Scalar* dinp, const Scalar* inp, const Scalar* dout, int N);

}  // namespace zt::cpu
