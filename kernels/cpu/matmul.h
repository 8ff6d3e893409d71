#pragma once
// Matrix products through BLAS (cblas_sgemm for float, cblas_dgemm for double). Row-major throughout.

namespace zt::cpu {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major; op transposes when trans_a / trans_b. lda/ldb/ldc are the
// row strides of A, B, C as stored.
template <typename Scalar>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, Scalar alpha, const Scalar* A, int lda, const Scalar* B,
          int ldb, Scalar beta, Scalar* C, int ldc);

// Hugging Face Conv1D: out[N,OC] = inp[N,C] @ weight[C,OC] + bias[OC]; bias may be nullptr.
template <typename Scalar>
void matmul_forward(Scalar* out, const Scalar* inp, const Scalar* weight, const Scalar* bias, int N, int C, int OC);

// OVERWRITES dinp (= dout @ weight^T; in GPT-2 every matmul input gradient is a fresh buffer, so no memset is
// needed); ACCUMULATES (+=) into dweight (inp^T @ dout) and dbias (column sums of dout; skipped when nullptr).
template <typename Scalar>
void matmul_backward(Scalar* dinp, Scalar* dweight, Scalar* dbias, const Scalar* dout, const Scalar* inp,
                     const Scalar* weight, int N, int C, int OC);

// The tied LM head: out[N,OC] = inp[N,C] @ weight[OC,C]^T (weight is the [vocab, C] token embedding), no bias.
template <typename Scalar>
void matmul_transposed_forward(Scalar* out, const Scalar* inp, const Scalar* weight, int N, int C, int OC);

// OVERWRITES dinp (= dout @ weight); ACCUMULATES (+=) into dweight (dout^T @ inp).
template <typename Scalar>
void matmul_transposed_backward(Scalar* dinp, Scalar* dweight, const Scalar* dout, const Scalar* inp,
                                const Scalar* weight, int N, int C, int OC);

}  // namespace zt::cpu
