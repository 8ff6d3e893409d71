#include "kernels/cuda/matmul_lt.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace zt::cuda {
namespace {

template <typename T>
constexpr cudaDataType_t data_type();
template <>
constexpr cudaDataType_t data_type<float>() {
  return CUDA_R_32F;
}
template <>
constexpr cudaDataType_t data_type<__nv_bfloat16>() {
  return CUDA_R_16BF;
}
template <>
constexpr cudaDataType_t data_type<__half>() {
  return CUDA_R_16F;
}

int alignment_of(const void* p) {
  if (!p) return 16;
  const auto a = reinterpret_cast<uintptr_t>(p);
  int align = 1;
  while (align < 16 && a % (uintptr_t)(align * 2) == 0) align *= 2;
  return align;
}

cublasLtEpilogue_t lt_epilogue(MatmulEpilogue e, bool aux) {
  switch (e) {
    case MatmulEpilogue::kNone:
      return CUBLASLT_EPILOGUE_DEFAULT;
    case MatmulEpilogue::kBias:
      return CUBLASLT_EPILOGUE_BIAS;
    case MatmulEpilogue::kGelu:
      return aux ? CUBLASLT_EPILOGUE_GELU_AUX : CUBLASLT_EPILOGUE_GELU;
    case MatmulEpilogue::kBiasGelu:
      return aux ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
  }
  throw RuntimeError("matmul: unknown epilogue " + std::to_string(static_cast<int>(e)));
}

// Owners of the cuBLASLt descriptors of one call (destroyed even when a later call throws).
struct OpDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  ~OpDesc() { cublasLtMatmulDescDestroy(desc); }
};
struct Layout {
  cublasLtMatrixLayout_t desc = nullptr;
  ~Layout() { cublasLtMatrixLayoutDestroy(desc); }
};
struct Preference {
  cublasLtMatmulPreference_t desc = nullptr;
  ~Preference() { cublasLtMatmulPreferenceDestroy(desc); }
};

std::string shape_text(int M, int N, int K, bool ta, bool tb) {
  return "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
         " trans_a=" + std::to_string(ta) + " trans_b=" + std::to_string(tb);
}

}  // namespace

MatmulLt::MatmulLt(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  ZT_CUBLAS_CHECK(cublasLtCreate(&handle_));
  if (workspace_bytes_ > 0) {
    const cudaError_t e = cudaMalloc(&workspace_, workspace_bytes_);
    if (e != cudaSuccess) {
      cublasLtDestroy(handle_);
      check_cuda(e, "cudaMalloc(cuBLASLt workspace)", __FILE__, __LINE__);
    }
  }
}

MatmulLt::~MatmulLt() {
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

template <typename T>
void MatmulLt::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda, const T* B,
                    int ldb, float beta, T* C, int ldc, MatmulEpilogue epilogue, const T* bias, T* pre_gelu,
                    cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const bool wants_bias = epilogue == MatmulEpilogue::kBias || epilogue == MatmulEpilogue::kBiasGelu;
  if (wants_bias && !bias)
    throw RuntimeError("matmul: a bias epilogue without a bias, " + shape_text(M, N, K, trans_a, trans_b));
  const bool aux = pre_gelu != nullptr;
  if (aux && epilogue != MatmulEpilogue::kGelu && epilogue != MatmulEpilogue::kBiasGelu)
    throw RuntimeError("matmul: pre_gelu given without a GELU epilogue");
  if (aux && ldc % 8 != 0)
    throw RuntimeError("matmul: pre_gelu needs a row stride that is a multiple of 8, got ldc=" + std::to_string(ldc));

  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: a row-major matrix with row stride ld is the
  // column-major storage of its transpose. So cuBLASLt's A is our B, its B is our A, and m, n swap.
  const cudaDataType_t type = data_type<T>();
  const int m = N, n = M, k = K;
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t epi = lt_epilogue(epilogue, aux);

  OpDesc op;
  ZT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (wants_bias) {
    ZT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (aux) {
    const int64_t aux_ld = ldc;
    ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &pre_gelu,
                                                   sizeof(pre_gelu)));
    ZT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }

  Layout a_layout, b_layout, c_layout;
  ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout.desc, type, op_a == CUBLAS_OP_N ? m : k,
                                             op_a == CUBLAS_OP_N ? k : m, ldb));
  ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout.desc, type, op_b == CUBLAS_OP_N ? k : n,
                                             op_b == CUBLAS_OP_N ? n : k, lda));
  ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_layout.desc, type, m, n, ldc));

  MatmulKey key;
  key.m = m;
  key.n = n;
  key.k = k;
  key.trans_a = trans_b;
  key.trans_b = trans_a;
  key.lda = ldb;
  key.ldb = lda;
  key.ldc = ldc;
  key.dtype = static_cast<int>(type);
  key.epilogue = static_cast<int>(epi);
  key.beta_zero = beta == 0.0f;
  key.alignment = alignment_of(A);
  for (const void* p : {static_cast<const void*>(B), static_cast<const void*>(C), static_cast<const void*>(bias),
                        static_cast<const void*>(pre_gelu)}) {
    const int a = alignment_of(p);
    if (a < key.alignment) key.alignment = a;
  }

  const MatmulAlgo algo = cache_.get(key, [&]() {
    Preference pref;
    ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.desc));
    ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.desc, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes_, sizeof(workspace_bytes_)));
    const uint32_t align = static_cast<uint32_t>(key.alignment);
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.desc, attr, &align, sizeof(align)));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    ZT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, op.desc, a_layout.desc, b_layout.desc, c_layout.desc,
                                                   c_layout.desc, pref.desc, 1, &result, &found));
    if (found == 0) {
      throw RuntimeError("matmul: cuBLASLt has no algorithm for " + shape_text(M, N, K, trans_a, trans_b) +
                         " (lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) + " ldc=" +
                         std::to_string(ldc) + ", alignment " + std::to_string(key.alignment) + ")");
    }
    MatmulAlgo a;
    static_assert(sizeof(result.algo) == sizeof(a.data), "cublasLtMatmulAlgo_t is 64 bytes");
    std::memcpy(a.data.data(), &result.algo, sizeof(a.data));
    a.workspace_bytes = result.workspaceSize;
    return a;
  });

  cublasLtMatmulAlgo_t lt_algo;
  std::memcpy(&lt_algo, algo.data.data(), sizeof(lt_algo));
  ZT_CUBLAS_CHECK(cublasLtMatmul(handle_, op.desc, &alpha, B, a_layout.desc, A, b_layout.desc, &beta, C,
                                 c_layout.desc, C, c_layout.desc, &lt_algo, workspace_, workspace_bytes_, stream));
}

#define ZT_INSTANTIATE(T)                                                                                          \
  template void MatmulLt::gemm<T>(bool, bool, int, int, int, float, const T*, int, const T*, int, float, T*, int, \
                                  MatmulEpilogue, const T*, T*, cudaStream_t);
ZT_INSTANTIATE(float)
ZT_INSTANTIATE(__nv_bfloat16)
ZT_INSTANTIATE(__half)
#undef ZT_INSTANTIATE

}  // namespace zt::cuda
