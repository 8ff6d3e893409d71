#include "kernels/cpu/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "kernels/cpu/parallel.h"

namespace zt::cpu {

namespace {

void blas_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

void blas_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
               double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

// OpenBLAS (the pthreads build) keeps its own thread pool; with OpenMP kernels in between, the two pools spin
// against each other on few cores. So BLAS runs single-threaded and the GEMM is split across the OpenMP threads
// instead: one pool for everything. This is process-wide (OpenBLAS has no per-call thread count).
void make_blas_single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

}  // namespace

template <typename Scalar>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, Scalar alpha, const Scalar* A, int lda, const Scalar* B,
          int ldb, Scalar beta, Scalar* C, int ldc) {
  make_blas_single_threaded();
  // Each thread computes a block of C: rows when M is the larger side, else columns. A row block of op(A) starts at
  // row i of A (or column i when transposed); a column block of op(B) at column j of B (or row j when transposed).
  // The blocks are fixed by the sizes and thread count, so results are deterministic.
  const long long work = (long long)M * N * K;
  const int max_threads = work < (1LL << 18) ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(max_threads)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    if (M >= N) {
      const int per = ((M + nt - 1) / nt + 7) / 8 * 8;
      const int i0 = tid * per, i1 = std::min(M, i0 + per);
      if (i0 < i1) {
        const Scalar* a = trans_a ? A + i0 : A + (size_t)i0 * lda;
        blas_gemm(trans_a, trans_b, i1 - i0, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)i0 * ldc, ldc);
      }
    } else {
      const int per = ((N + nt - 1) / nt + 15) / 16 * 16;
      const int j0 = tid * per, j1 = std::min(N, j0 + per);
      if (j0 < j1) {
        const Scalar* b = trans_b ? B + (size_t)j0 * ldb : B + j0;
        blas_gemm(trans_a, trans_b, M, j1 - j0, K, alpha, A, lda, b, ldb, beta, C + j0, ldc);
      }
    }
  }
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*,
                           int);

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
template void matmul_backward<double>(double*, double*, double*, const double*, const double*, const double*, int, int,
                                      int);
template void matmul_transposed_forward<float>(float*, const float*, const float*, int, int, int);
template void matmul_transposed_forward<double>(double*, const double*, const double*, int, int, int);
template void matmul_transposed_backward<float>(float*, float*, const float*, const float*, const float*, int, int,
                                                int);
template void matmul_transposed_backward<double>(double*, double*, const double*, const double*, const double*, int,
                                                 int, int);

}  // namespace zt::cpu
