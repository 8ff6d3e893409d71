// The step between reduced gradients and the optimizer, shared by the CPU engines and the GPU engine
// (engine/zero/engine_common.h): DeepSpeed's loss-scaler rule, the overflow skip, unscaling and clipping, checked on
// a recording fake of the gradient buffer and on host gradients, in a world of one.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/store.h"
#include "engine/zero/engine_common.h"

namespace zt {
namespace {

std::unique_ptr<ProcessGroup> world_of_one() {
  return make_gloo_process_group(0, 1, std::make_shared<LocalStore>(), 60.0);
}

Fp16Config dynamic_fp16(int power, int hysteresis, int window) {
  Fp16Config f;
  f.enabled = true;
  f.initial_scale_power = power;
  f.hysteresis = hysteresis;
  f.loss_scale_window = window;
  return f;
}

// Records what finish_gradients asks of the buffer, in order.
class RecordingGradients : public ReducedGradients {
 public:
  RecordingGradients(bool nonfinite, double sum_squares) : nonfinite_(nonfinite), sum_squares_(sum_squares) {}
  bool has_nonfinite() override {
    calls.push_back("has_nonfinite");
    return nonfinite_;
  }
  void scale(float factor) override {
    calls.push_back("scale");
    factors.push_back(factor);
    sum_squares_ *= double(factor) * factor;
  }
  double sum_squares() override {
    calls.push_back("sum_squares");
    return sum_squares_;
  }
  std::vector<std::string> calls;
  std::vector<float> factors;

 private:
  bool nonfinite_;
  double sum_squares_;
};

TEST(FinishGradients, OverflowSkipsWithoutTouchingTheGradientsAndHalvesTheScale) {
  auto pg = world_of_one();
  LossScaler scaler(dynamic_fp16(10, 1, 1000));
  RecordingGradients g(true, 4.0);
  StepResult r;
  EXPECT_FALSE(finish_gradients(*pg, scaler, g, 1.0, false, r));
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(r.loss_scale, 1024.0f);  // the scale the skipped step's gradients carried
  EXPECT_TRUE(std::isinf(r.grad_norm));
  EXPECT_EQ(scaler.scale(), 512.0f);
  EXPECT_EQ(g.calls, std::vector<std::string>{"has_nonfinite"});
}

TEST(FinishGradients, CleanStepUnscalesThenMeasuresThenClips) {
  auto pg = world_of_one();
  LossScaler scaler(dynamic_fp16(3, 2, 1000));
  // Scaled gradients of norm 8 * 3 at scale 8: unscaled norm 3, clipped to 1.5.
  RecordingGradients g(false, 9.0 * 64.0);
  StepResult r;
  EXPECT_TRUE(finish_gradients(*pg, scaler, g, 1.5, true, r));
  EXPECT_FALSE(r.skipped);
  EXPECT_EQ(r.loss_scale, 8.0f);
  EXPECT_NEAR(r.grad_norm, 3.0, 1e-6);
  const std::vector<std::string> expected{"has_nonfinite", "scale", "sum_squares", "scale"};
  EXPECT_EQ(g.calls, expected);
  ASSERT_EQ(g.factors.size(), 2u);
  EXPECT_EQ(g.factors[0], 1.0f / 8.0f);
  EXPECT_NEAR(g.factors[1], 1.5 / (3.0 + 1e-6), 1e-7);
  EXPECT_EQ(scaler.scale(), 8.0f);
  EXPECT_EQ(scaler.clean_steps(), 1);
}

TEST(FinishGradients, WithoutFp16NothingIsCheckedOrUnscaled) {
  auto pg = world_of_one();
  LossScaler scaler;  // bf16 and fp32: disabled
  RecordingGradients g(true, 0.25);  // a NaN would go on to the optimizer (and the loss), as in DeepSpeed's bf16
  StepResult r;
  EXPECT_TRUE(finish_gradients(*pg, scaler, g, 1.0, false, r));
  EXPECT_EQ(g.calls, std::vector<std::string>{"sum_squares"});  // norm 0.5 is below the clip: no scaling
  EXPECT_NEAR(r.grad_norm, 0.5, 1e-12);
  EXPECT_EQ(r.loss_scale, 1.0f);
}

TEST(FinishGradients, HostGradientsAreUnscaledAndClippedInPlace) {
  auto pg = world_of_one();
  LossScaler scaler(dynamic_fp16(2, 2, 1000));
  std::vector<float> g{12.0f, 16.0f};  // at scale 4: unscaled (3, 4), norm 5, clipped to norm 1
  StepResult r;
  EXPECT_TRUE(finish_gradients(*pg, scaler, g.data(), g.size(), 1.0, false, r));
  EXPECT_NEAR(r.grad_norm, 5.0, 1e-6);
  EXPECT_NEAR(g[0], 0.6f, 1e-6);
  EXPECT_NEAR(g[1], 0.8f, 1e-6);

  std::vector<float> bad{1.0f, std::numeric_limits<float>::infinity()};
  EXPECT_FALSE(finish_gradients(*pg, scaler, bad.data(), bad.size(), 1.0, false, r));
  EXPECT_EQ(bad[0], 1.0f);  // a skipped step leaves the gradients alone
}

TEST(LossScalerRule, HysteresisThenHalvingDownToTheMinimumAndDoublingAfterTheWindow) {
  Fp16Config f = dynamic_fp16(4, 2, 3);
  f.min_loss_scale = 4.0;
  LossScaler s(f);
  EXPECT_EQ(s.update(true), 16.0f);  // the first overflow uses up hysteresis
  EXPECT_EQ(s.hysteresis_left(), 1);
  EXPECT_EQ(s.update(true), 8.0f);
  EXPECT_EQ(s.update(true), 4.0f);
  EXPECT_EQ(s.update(true), 4.0f);  // not below min_loss_scale
  EXPECT_EQ(s.update(false), 4.0f);
  EXPECT_EQ(s.update(false), 4.0f);
  EXPECT_EQ(s.update(false), 8.0f);  // loss_scale_window clean steps
  EXPECT_EQ(s.hysteresis_left(), 2);  // restored when the scale grows
  EXPECT_EQ(s.update(true), 8.0f);
  EXPECT_EQ(s.clean_steps(), 0);
}

TEST(LossScalerRule, StaticScaleNeverMoves) {
  Fp16Config f;
  f.enabled = true;
  f.loss_scale = 128.0;
  LossScaler s(f);
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.update(true), 128.0f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.update(false), 128.0f);
}

}  // namespace
}  // namespace zt
