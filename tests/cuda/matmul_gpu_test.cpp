// cuBLASLt GEMMs against kernels/cpu/matmul (OpenBLAS): every transpose combination, alpha/beta, the bias and GELU
// epilogues (with the pre-GELU output), in fp32, bf16 and fp16; and the algorithm cache in use.
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/matmul_lt.h"

namespace {

using namespace zt::cuda::test;
using zt::cuda::MatmulEpilogue;

template <typename T_>
class MatmulGpu : public ::testing::Test {};
TYPED_TEST_SUITE(MatmulGpu, StorageTypes, StorageTypeNames);

// Multiples of 8, so that 16-bit rows stay 16-byte aligned as cuBLASLt's fast kernels want.
constexpr int M = 72, N = 40, K = 56;

TYPED_TEST(MatmulGpu, AllTransposesWithAlphaBeta) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  zt::cuda::MatmulLt lt;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(std::string("trans_a=") + (ta ? "1" : "0") + " trans_b=" + (tb ? "1" : "0"));
      const int lda = ta ? M : K, ldb = tb ? K : N;
      const auto a = round_to<S>(random_floats((size_t)M * K, 60));
      const auto b = round_to<S>(random_floats((size_t)K * N, 61));
      auto c = round_to<S>(random_floats((size_t)M * N, 62));
      DeviceArray<S> d_a(a), d_b(b), d_c(c);
      zt::cpu::gemm(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, 1.0f, c.data(), N);
      lt.gemm<S>(ta, tb, M, N, K, 0.5f, d_a.get(), lda, d_b.get(), ldb, 1.0f, d_c.get(), N);
      expect_close("gemm", c, d_c.download(), tolerance<S>());
    }
  }
}

TYPED_TEST(MatmulGpu, BiasAndGeluEpilogues) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  zt::cuda::MatmulLt lt;
  // Conv1D as the model uses it: out[M,N] = inp[M,K] @ weight[K,N] + bias[N].
  const auto inp = round_to<S>(random_floats((size_t)M * K, 63));
  const auto weight = round_to<S>(random_floats((size_t)K * N, 64, 0.2f));
  const auto bias = round_to<S>(random_floats(N, 65));
  std::vector<float> pre((size_t)M * N), post((size_t)M * N);
  zt::cpu::matmul_forward(pre.data(), inp.data(), weight.data(), bias.data(), M, K, N);
  zt::cpu::gelu_forward(post.data(), pre.data(), M * N);
  DeviceArray<S> d_inp(inp), d_w(weight), d_bias(bias), d_out((size_t)M * N), d_pre((size_t)M * N);

  lt.gemm<S>(false, false, M, N, K, 1.0f, d_inp.get(), K, d_w.get(), N, 0.0f, d_out.get(), N, MatmulEpilogue::kBias,
             d_bias.get());
  expect_close("bias epilogue", pre, d_out.download(), tolerance<S>());

  lt.gemm<S>(false, false, M, N, K, 1.0f, d_inp.get(), K, d_w.get(), N, 0.0f, d_out.get(), N,
             MatmulEpilogue::kBiasGelu, d_bias.get(), d_pre.get());
  expect_close("bias+GELU epilogue", post, d_out.download(), tolerance<S>());
  expect_close("bias+GELU pre-activation", pre, d_pre.download(), tolerance<S>());
}

TYPED_TEST(MatmulGpu, AlgorithmIsCachedPerShape) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  zt::cuda::MatmulLt lt;
  DeviceArray<S> d_a(random_floats((size_t)M * K, 66)), d_b(random_floats((size_t)K * N, 67)), d_c((size_t)M * N);
  for (int i = 0; i < 3; i++)
    lt.gemm<S>(false, false, M, N, K, 1.0f, d_a.get(), K, d_b.get(), N, 0.0f, d_c.get(), N);
  lt.gemm<S>(false, false, M / 2, N, K, 1.0f, d_a.get(), K, d_b.get(), N, 0.0f, d_c.get(), N);
  EXPECT_EQ(lt.algo_cache().misses(), 2u);
  EXPECT_EQ(lt.algo_cache().hits(), 2u);
}

TEST(MatmulArgs, RejectsBadEpilogueArguments) {
  ZT_REQUIRE_GPU();  // constructing MatmulLt needs a device
  zt::cuda::MatmulLt lt(0);
  float* none = nullptr;
  EXPECT_THROW(lt.gemm<float>(false, false, 8, 8, 8, 1.0f, none, 8, none, 8, 0.0f, none, 8, MatmulEpilogue::kBias),
               zt::RuntimeError);
  float fake = 0;
  EXPECT_THROW(lt.gemm<float>(false, false, 8, 8, 8, 1.0f, none, 8, none, 8, 0.0f, none, 8, MatmulEpilogue::kNone,
                              nullptr, &fake),
               zt::RuntimeError);
}

}  // namespace
