#pragma once
// Residual connection: out = inp1 + inp2.

namespace zt::cpu {

template <typename Scalar>
void residual_forward(Scalar* out, const Scalar* inp1, const Scalar* inp2, int N);

// ACCUMULATES (+=) dout into dinp1 and dinp2. (The model itself never calls this: both inputs of a residual add
// get the same gradient, so it keeps one residual-stream gradient buffer and lets each branch add into it.)
template <typename Scalar>
void residual_backward(Scalar* dinp1, Scalar* dinp2, const Scalar* dout, int N);

}  // namespace zt::cpu
