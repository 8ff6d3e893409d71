#pragma once
// Fused, numerically stable softmax + cross-entropy over the vocabulary, mean over positions.
#include <cstdint>

namespace zt::cpu {

// logits: [N,V]; targets: [N]; writes losses[n] = logsumexp(logits[n]) - logits[n, targets[n]] and lse[n] (kept
// for backward). Returns the mean loss over the N positions (summed in double, in row order).
template <typename Scalar>
Scalar cross_entropy_forward(Scalar* losses, Scalar* lse, const Scalar* logits, const int32_t* targets, int N, int V);

// OVERWRITES dlogits [N,V] with dloss * (softmax(logits) - onehot(target)), where dloss is the gradient of the
// objective with respect to each position's loss (1/N for the mean; times any loss/accumulation scale). dlogits
// may alias logits.
template <typename Scalar>
void cross_entropy_backward(Scalar* dlogits, const Scalar* logits, const Scalar* lse, const int32_t* targets,
                            Scalar dloss, int N, int V);

}  // namespace zt::cpu
