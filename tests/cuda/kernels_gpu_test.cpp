// Each GPU kernel of kernels/cuda against its CPU kernel of kernels/cpu, forward and backward, in fp32, bf16 and
// fp16 storage (the CPU reference runs in fp32 on the inputs rounded to the storage type). Accumulating outputs
// start from random values, so "+=" is tested too. Without a GPU every test skips with "no GPU".
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/encoder.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/residual.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/layernorm.h"

namespace {

using namespace zt::cuda::test;

constexpr int B = 3, T = 37, C = 200, V = 1031;

template <typename T_>
class KernelsGpu : public ::testing::Test {};
TYPED_TEST_SUITE(KernelsGpu, StorageTypes, StorageTypeNames);

std::vector<int32_t> tokens(int n, int vocab) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; i++) t[i] = (i * 37 + 11) % vocab;
  t[n - 1] = t[0];  // a repeated token: its dwte row gets two contributions
  return t;
}

TYPED_TEST(KernelsGpu, Encoder) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  const int N = B * T;
  const auto ids = tokens(N, V);
  const auto wte = round_to<S>(random_floats((size_t)V * C, 1));
  const auto wpe = round_to<S>(random_floats((size_t)T * C, 2));
  std::vector<float> out(N * C);
  zt::cpu::encoder_forward(out.data(), ids.data(), wte.data(), wpe.data(), B, T, C);
  DeviceRaw<int32_t> d_ids(ids);
  DeviceArray<S> d_wte(wte), d_wpe(wpe), d_out((size_t)N * C);
  zt::cuda::encoder_forward(d_out.get(), d_ids.get(), d_wte.get(), d_wpe.get(), B, T, C);
  expect_close("encoder_forward", out, d_out.download(), tolerance<S>());

  const auto dout = round_to<S>(random_floats((size_t)N * C, 3));
  auto dwte = round_to<S>(random_floats((size_t)V * C, 4, 0.1f));
  auto dwpe = round_to<S>(random_floats((size_t)T * C, 5, 0.1f));
  DeviceArray<S> d_dout(dout), d_dwte(dwte), d_dwpe(dwpe);
  zt::cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), ids.data(), B, T, C);
  zt::cuda::encoder_backward(d_dwte.get(), d_dwpe.get(), d_dout.get(), d_ids.get(), B, T, C);
  expect_close("encoder_backward dwte", dwte, d_dwte.download(), tolerance<S>());
  expect_close("encoder_backward dwpe", dwpe, d_dwpe.download(), tolerance<S>());
}

TYPED_TEST(KernelsGpu, GeluAndResidual) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  const int n = B * T * C;
  const auto x = round_to<S>(random_floats(n, 6, 2.0f));
  const auto y = round_to<S>(random_floats(n, 7));
  const auto dout = round_to<S>(random_floats(n, 8));
  DeviceArray<S> d_x(x), d_y(y), d_dout(dout), d_out(n);

  std::vector<float> out(n);
  zt::cpu::gelu_forward(out.data(), x.data(), n);
  zt::cuda::gelu_forward(d_out.get(), d_x.get(), n);
  expect_close("gelu_forward", out, d_out.download(), tolerance<S>());
  std::vector<float> dinp(n);
  zt::cpu::gelu_backward(dinp.data(), x.data(), dout.data(), n);
  zt::cuda::gelu_backward(d_out.get(), d_x.get(), d_dout.get(), n);
  expect_close("gelu_backward", dinp, d_out.download(), tolerance<S>());
  // In place, as the model runs it: dinp aliases dout.
  zt::cuda::gelu_backward(d_dout.get(), d_x.get(), d_dout.get(), n);
  expect_close("gelu_backward in place", dinp, d_dout.download(), tolerance<S>());

  zt::cpu::residual_forward(out.data(), x.data(), y.data(), n);
  zt::cuda::residual_forward(d_out.get(), d_x.get(), d_y.get(), n);
  expect_close("residual_forward", out, d_out.download(), tolerance<S>());
  auto da = x, db = y;  // accumulated into
  zt::cpu::residual_backward(da.data(), db.data(), dout.data(), n);
  d_dout.upload(dout);
  zt::cuda::residual_backward(d_x.get(), d_y.get(), d_dout.get(), n);
  expect_close("residual_backward dinp1", da, d_x.download(), tolerance<S>());
  expect_close("residual_backward dinp2", db, d_y.download(), tolerance<S>());
}

TYPED_TEST(KernelsGpu, LayerNorm) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  const int N = B * T;
  // A large mean, as on a residual stream: the two-pass variance must hold up.
  auto x = random_floats((size_t)N * C, 9);
  for (auto& v : x) v += 20.0f;
  x = round_to<S>(x);
  const auto w = round_to<S>(random_floats(C, 10));
  const auto bias = round_to<S>(random_floats(C, 11));
  std::vector<float> out((size_t)N * C), mean(N), rstd(N);
  zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), N, C);
  DeviceArray<S> d_x(x), d_w(w), d_b(bias), d_out((size_t)N * C);
  DeviceArray<float> d_mean(N), d_rstd(N);
  zt::cuda::layernorm_forward(d_out.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(), d_b.get(), N, C);
  expect_close("layernorm_forward out", out, d_out.download(), tolerance<S>());
  expect_close("layernorm_forward mean", mean, d_mean.download(), 1e-5);
  expect_close("layernorm_forward rstd", rstd, d_rstd.download(), 1e-4);

  const auto dout = round_to<S>(random_floats((size_t)N * C, 12));
  auto dx = round_to<S>(random_floats((size_t)N * C, 13, 0.1f));
  auto dw = round_to<S>(random_floats(C, 14, 0.1f));
  auto db = round_to<S>(random_floats(C, 15, 0.1f));
  DeviceArray<S> d_dout(dout), d_dx(dx), d_dw(dw), d_db(db);
  zt::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(),
                              rstd.data(), N, C);
  // The GPU backward uses the CPU's mean/rstd, so that only the backward is compared.
  d_mean.upload(mean);
  d_rstd.upload(rstd);
  zt::cuda::layernorm_backward(d_dx.get(), d_dw.get(), d_db.get(), d_dout.get(), d_x.get(), d_w.get(),
                               d_mean.get(), d_rstd.get(), N, C);
  expect_close("layernorm_backward dinp", dx, d_dx.download(), tolerance<S>());
  expect_close("layernorm_backward dweight", dw, d_dw.download(), tolerance<S>());
  expect_close("layernorm_backward dbias", db, d_db.download(), tolerance<S>());
}

TYPED_TEST(KernelsGpu, CrossEntropy) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  const int N = B * T;
  const auto logits = round_to<S>(random_floats((size_t)N * V, 16, 3.0f));
  const auto targets = tokens(N, V);
  std::vector<float> losses(N), lse(N);
  zt::cpu::cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N, V);
  DeviceArray<S> d_logits(logits);
  DeviceArray<float> d_losses(N), d_lse(N);
  DeviceRaw<int32_t> d_targets(targets);
  zt::cuda::cross_entropy_forward(d_losses.get(), d_lse.get(), d_logits.get(), d_targets.get(), N, V);
  // losses and lse are fp32 on both sides, computed from the same (rounded) logits.
  expect_close("cross_entropy_forward losses", losses, d_losses.download(), 1e-5);
  expect_close("cross_entropy_forward lse", lse, d_lse.download(), 1e-5);

  const float dloss = 1.0f / N;
  std::vector<float> dlogits((size_t)N * V);
  zt::cpu::cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), dloss, N, V);
  DeviceArray<S> d_dlogits((size_t)N * V);
  d_lse.upload(lse);
  zt::cuda::cross_entropy_backward(d_dlogits.get(), d_logits.get(), d_lse.get(), d_targets.get(), dloss, N, V);
  expect_close("cross_entropy_backward", dlogits, d_dlogits.download(), tolerance<S>());
  // In place over the logits, as the model runs it.
  zt::cuda::cross_entropy_backward(d_logits.get(), d_logits.get(), d_lse.get(), d_targets.get(), dloss, N, V);
  expect_close("cross_entropy_backward in place", dlogits, d_logits.download(), tolerance<S>());
}

TEST(CrossEntropyGpu, TargetOutOfRangeGivesNaNLoss) {
  ZT_REQUIRE_GPU();
  const int N = 2, vocab = 50;
  DeviceArray<float> d_logits(random_floats((size_t)N * vocab, 17)), d_losses(N), d_lse(N);
  DeviceRaw<int32_t> d_targets(std::vector<int32_t>{3, vocab});
  zt::cuda::cross_entropy_forward(d_losses.get(), d_lse.get(), d_logits.get(), d_targets.get(), N, vocab);
  const auto losses = d_losses.download();
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_TRUE(std::isnan(losses[1]));
}

// The casts (and round_to_storage) round to nearest even exactly like the CPU conversions: bit-identical on finite
// values, ties, denormals, infinities and values that overflow the 16-bit range.
template <typename S>
void check_casts() {
  auto x = random_floats(4096, 18, 100.0f);
  const std::vector<float> special = {0.0f,      -0.0f,   1.0f + 1.0f / 256,  1.0f + 3.0f / 256, 1.0f + 1.0f / 2048,
                                      65520.0f, 1e-40f,  -3e38f,            INFINITY,          -INFINITY,
                                      1e-8f,    6.1e-5f, 3.3895314e38f};
  x.insert(x.end(), special.begin(), special.end());
  DeviceArray<float> d_x(x), d_back(x.size());
  DeviceArray<S> d_half(x.size());
  zt::cuda::cast(d_half.get(), d_x.get(), x.size());
  const auto rounded = round_to<S>(x);
  const auto got = d_half.download();
  for (size_t i = 0; i < x.size(); i++)
    ASSERT_EQ(to_bits<S>(got[i]), to_bits<S>(rounded[i])) << "float -> 16 bit of " << x[i] << " (index " << i << ")";
  zt::cuda::cast(d_back.get(), d_half.get(), x.size());
  const auto back = d_back.download();
  for (size_t i = 0; i < x.size(); i++) ASSERT_EQ(back[i], rounded[i]) << "16 bit -> float at " << i;
  // The in-place rounding of fp32 values (reduced gradients) gives the same values without a 16-bit buffer.
  DeviceArray<float> d_inplace(x);
  zt::cuda::round_to_storage<S>(d_inplace.get(), x.size());
  const auto inplace = d_inplace.download();
  for (size_t i = 0; i < x.size(); i++) ASSERT_EQ(inplace[i], rounded[i]) << "round_to_storage at " << i;
}

TEST(CastGpu, Bf16MatchesCpuConversion) {
  ZT_REQUIRE_GPU();
  check_casts<__nv_bfloat16>();
}

TEST(CastGpu, Fp16MatchesCpuConversion) {
  ZT_REQUIRE_GPU();
  check_casts<__half>();
}

}  // namespace
