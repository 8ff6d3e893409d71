// The flat-buffer kernels against the CPU: Adam/AdamW against engine/optim's optimizer over several steps, the sum
// of squares against a double sum, scaling, and the inf/NaN check.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/optim/optimizer.h"
#include "gpu_test_util.h"
#include "kernels/cuda/grad_update.h"

namespace {

using namespace zt::cuda::test;

template <typename T_>
class GradUpdateGpu : public ::testing::Test {};
TYPED_TEST_SUITE(GradUpdateGpu, StorageTypes, StorageTypeNames);

template <typename G>
void check_adam(bool decoupled) {
  SCOPED_TRACE(decoupled ? "AdamW" : "Adam (L2)");
  const size_t n = 100003;
  zt::OptimizerConfig cfg;
  cfg.type = decoupled ? zt::OptimizerType::AdamW : zt::OptimizerType::Adam;
  cfg.adam_w_mode = decoupled;
  cfg.weight_decay = 0.1;
  const double lr = 3e-3;
  auto cpu = zt::make_optimizer(cfg, n);
  auto params = random_floats(n, 30);
  DeviceArray<float> d_params(params), d_m(std::vector<float>(n, 0.0f)), d_v(std::vector<float>(n, 0.0f));
  // Decay on the first half only, as for weights vs biases.
  const std::vector<zt::DecayRange> ranges = {{0, n / 2, true}};
  for (int64_t step = 1; step <= 3; step++) {
    const auto grads = round_to<G>(random_floats(n, 31 + (uint32_t)step));
    cpu->step(params.data(), grads.data(), ranges, lr, step);
    DeviceArray<G> d_grads(grads);
    zt::cuda::adam_update(d_params.get(), d_grads.get(), d_m.get(), d_v.get(), n / 2,
                          zt::adam_step_scalars(cfg, decoupled, lr, step, true));
    zt::cuda::adam_update(d_params.get() + n / 2, d_grads.get() + n / 2, d_m.get() + n / 2, d_v.get() + n / 2,
                          n - n / 2, zt::adam_step_scalars(cfg, decoupled, lr, step, false));
  }
  // Parameters and state are fp32 on both sides and the gradients are the same values, so fp32 tolerance holds
  // for every gradient type.
  expect_close("params", params, d_params.download(), 1e-5);
  const auto state = cpu->state();
  expect_close("exp_avg", std::vector<float>(state[0].second, state[0].second + n), d_m.download(), 1e-5);
  expect_close("exp_avg_sq", std::vector<float>(state[1].second, state[1].second + n), d_v.download(), 1e-5);
}

TYPED_TEST(GradUpdateGpu, AdamMatchesCpuOptimizer) {
  ZT_REQUIRE_GPU();
  check_adam<TypeParam>(true);
  check_adam<TypeParam>(false);
}

// SGD with and without momentum, weight decay on the first half only: the same float operations as the CPU
// optimizer, so parameters and the momentum buffer agree to fp32 rounding over 3 steps.
template <typename G>
void check_sgd(double momentum) {
  SCOPED_TRACE("momentum " + std::to_string(momentum));
  const size_t n = 100003;
  zt::OptimizerConfig cfg;
  cfg.type = zt::OptimizerType::SGD;
  cfg.momentum = momentum;
  cfg.weight_decay = 0.1;
  const double lr = 0.05;
  auto cpu = zt::make_optimizer(cfg, n);
  auto params = random_floats(n, 50);
  DeviceArray<float> d_params(params), d_buf(std::vector<float>(n, 0.0f));
  const std::vector<zt::DecayRange> ranges = {{0, n / 2, true}};
  for (int64_t step = 1; step <= 3; step++) {
    const auto grads = round_to<G>(random_floats(n, 51 + (uint32_t)step));
    cpu->step(params.data(), grads.data(), ranges, lr, step);
    DeviceArray<G> d_grads(grads);
    zt::cuda::sgd_update(d_params.get(), d_grads.get(), d_buf.get(), n / 2, (float)lr, (float)momentum, 0.1f);
    zt::cuda::sgd_update(d_params.get() + n / 2, d_grads.get() + n / 2, d_buf.get() + n / 2, n - n / 2, (float)lr,
                         (float)momentum, 0.0f);
  }
  expect_close("params", params, d_params.download(), 1e-6);
  const auto state = cpu->state();
  const std::vector<float> buf = d_buf.download();
  if (momentum != 0.0) {
    expect_close("momentum_buffer", std::vector<float>(state[0].second, state[0].second + n), buf, 1e-6);
  } else {
    EXPECT_EQ(buf, std::vector<float>(n, 0.0f));  // untouched without momentum
  }
}

TYPED_TEST(GradUpdateGpu, SgdMatchesCpuOptimizer) {
  ZT_REQUIRE_GPU();
  check_sgd<TypeParam>(0.9);
  check_sgd<TypeParam>(0.0);
}

TYPED_TEST(GradUpdateGpu, SumSquaresAndScale) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  DeviceArray<float> d_partials(zt::cuda::kSumSquaresPartials);
  DeviceRaw<double> d_sum(std::vector<double>{-1.0});
  for (size_t n : {size_t(0), size_t(5), size_t(1000003)}) {
    const auto x = round_to<S>(random_floats(n, 40));
    double ref = 0;
    for (float v : x) ref += (double)v * v;
    DeviceArray<S> d_x(x);
    zt::cuda::sum_squares(d_sum.get(), d_partials.get(), d_x.get(), n);
    const double got = d_sum.download()[0];
    EXPECT_NEAR(got, ref, 1e-5 * std::max(ref, 1.0)) << "n=" << n;
    if (n == 0) continue;
    zt::cuda::scale_inplace(d_x.get(), n, 0.25f);
    auto scaled = x;
    for (auto& v : scaled) v *= 0.25f;
    expect_close("scale_inplace", scaled, d_x.download(), tolerance<S>());
  }
}

TYPED_TEST(GradUpdateGpu, FindsNonFinite) {
  using S = TypeParam;
  ZT_REQUIRE_GPU();
  const size_t n = 300001;
  auto x = random_floats(n, 50);
  DeviceRaw<int> flag(std::vector<int>{0});
  DeviceArray<S> d_x(x);
  zt::cuda::find_nonfinite(flag.get(), d_x.get(), n);
  EXPECT_EQ(flag.download()[0], 0) << "finite values flagged";
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    for (size_t at : {size_t(0), n / 2, n - 1}) {
      auto y = x;
      y[at] = bad;
      d_x.upload(y);
      DeviceRaw<int> f(std::vector<int>{0});
      zt::cuda::find_nonfinite(f.get(), d_x.get(), n);
      EXPECT_EQ(f.download()[0], 1) << bad << " at " << at << " missed";
    }
  }
  // The flag is never cleared by a clean buffer.
  DeviceRaw<int> set(std::vector<int>{1});
  d_x.upload(x);
  zt::cuda::find_nonfinite(set.get(), d_x.get(), n);
  EXPECT_EQ(set.download()[0], 1);
}

}  // namespace
