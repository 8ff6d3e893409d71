#pragma once
// Row-major GEMMs on the GPU through cuBLASLt: C[M,N] = alpha op(A) op(B) + beta C, with an optional bias (per
// column of C) and GELU epilogue. fp32 runs with fp32 compute (no TF32); bf16 and fp16 store in 16 bits and
// compute in fp32. The algorithm the heuristic picks is cached per problem (MatmulAlgoCache); one workspace serves
// every call.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/matmul_algo_cache.h"

namespace zt::cuda {

enum class MatmulEpilogue { kNone, kBias, kGelu, kBiasGelu };

class MatmulLt {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;

  explicit MatmulLt(size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~MatmulLt();
  MatmulLt(const MatmulLt&) = delete;
  MatmulLt& operator=(const MatmulLt&) = delete;

  // Row-major, as kernels/cpu/matmul.h gemm: lda/ldb/ldc are the row strides as stored. bias: [N], for kBias and
  // kBiasGelu. pre_gelu (optional, [M,N] with row stride ldc, ldc a multiple of 8): receives the value before the
  // GELU, which the GELU backward needs. Asynchronous on stream.
  template <typename T>
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda, const T* B, int ldb,
            float beta, T* C, int ldc, MatmulEpilogue epilogue = MatmulEpilogue::kNone, const T* bias = nullptr,
            T* pre_gelu = nullptr, cudaStream_t stream = nullptr);

  const MatmulAlgoCache& algo_cache() const { return cache_; }

 private:
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  MatmulAlgoCache cache_;
};

}  // namespace zt::cuda
