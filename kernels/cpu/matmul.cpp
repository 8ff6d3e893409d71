#include "kernels/cpu/matmul.h"

#include <cstddef>
#include <cblas.h>

#include "kernels/cpu/parallel.h"

namespace zt::cpu {

template <>
void gemm<float>(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

template <typename Scalar>
void matmul_forward(Scalar* out, const Scalar* inp, const Scalar* weight, const Scalar* bias, int N, int C, int OC) {
  if (bias) {
    // Start from the broadcast bias and let the GEMM add the product (beta = 1): one pass over out instead of two.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
      Scalar* o = out + (size_t)n * OC;
      for (int j = 0; j < OC; j++) o[j] = bias[j];
    }
  }
  gemm<Scalar>(false, false, N, OC, C, Scalar(1), inp, C, weight, OC, bias ? Scalar(1) : Scalar(0), out, OC);
}

template <typename Scalar>
void matmul_backward(Scalar* dinp, Scalar* dweight, Scalar* dbias, const Scalar* dout, const Scalar* inp,
                     const Scalar* weight, int N, int C, int OC) {
  gemm<Scalar>(false, true, N, C, OC, Scalar(1), dout, OC, weight, OC, Scalar(0), dinp, C);
  gemm<Scalar>(true, false, C, OC, N, Scalar(1), inp, C, dout, OC, Scalar(1), dweight, OC);
  if (dbias) {
    parallel_column_chunks(OC, [&](int j0, int j1) {
      for (int n = 0; n < N; n++) {
        const Scalar* d = dout + (size_t)n * OC;
        for (int j = j0; j < j1; j++) dbias[j] += d[j];
      }
    });
  }
}

template <typename Scalar>
void matmul_transposed_forward(Scalar* out, const Scalar* inp, const Scalar* weight, int N, int C, int OC) {
  gemm<Scalar>(false, true, N, OC, C, Scalar(1), inp, C, weight, C, Scalar(0), out, OC);
}

template <typename Scalar>
void matmul_transposed_backward(Scalar* dinp, Scalar* dweight, const Scalar* dout, const Scalar* inp,
                                const Scalar* weight, int N, int C, int OC) {
  gemm<Scalar>(false, false, N, C, OC, Scalar(1), dout, OC, weight, C, Scalar(0), dinp, C);
  gemm<Scalar>(true, false, OC, C, N, Scalar(1), dout, OC, inp, C, Scalar(1), dweight, C);
}

template void matmul_forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward<double>(double*, const double*, const double*, const double*, int, int, int);
template void matmul_backward<float>(float*, float*, float*, const float*, const float*, const float*, int, int, int);
template void matmul_backward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                      int, int);
template void matmul_transposed_forward<float>(float*, const float*, const float*, int, int, int);
template void matmul_transposed_forward<double>(double*, const double*, const double*, int, int, int);
template void matmul_transposed_backward<float>(float*, float*, const float*, const float*, const float*, int, int,
                                                int);
template void matmul_transposed_backward<double>(double*, double*, const double*, const double*, const double*, int,
                                                 int, int);

}  // namespace zt::cpu
