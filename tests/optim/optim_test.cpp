// Optimizer slice property, DeepSpeed schedule values (derived by hand from lr_schedules.py), norm helpers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/base/error.h"
#include "engine/optim/optimizer.h"

namespace {

using zt::DecayRange;

// The ranges of [begin, end) of a whole buffer, shifted into slice coordinates.
std::vector<DecayRange> slice_ranges(const std::vector<DecayRange>& ranges, size_t begin, size_t end) {
  std::vector<DecayRange> out;
  for (const DecayRange& r : ranges) {
    size_t b = std::max(r.begin, begin), e = std::min(r.end, end);
    if (b < e) out.push_back({b - begin, e - begin, r.decay});
  }
  return out;
}

void check_slices_match_whole(zt::OptimizerConfig cfg) {
  const size_t n = 10007, split = 4321;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::vector<float> whole(n), grads(n);
  for (float& x : whole) x = normal(gen);
  std::vector<float> sliced = whole;
  std::vector<DecayRange> ranges = {{0, 3000, true}, {3000, 5000, false}, {5000, 9000, true}};  // gap [9000, n)
  auto opt_whole = zt::make_optimizer(cfg, n);
  auto opt_a = zt::make_optimizer(cfg, split);
  auto opt_b = zt::make_optimizer(cfg, n - split);
  for (int step = 1; step <= 3; step++) {
    for (float& g : grads) g = normal(gen);
    double lr = 0.01 * step;
    opt_whole->step(whole.data(), grads.data(), ranges, lr, step);
    opt_a->step(sliced.data(), grads.data(), slice_ranges(ranges, 0, split), lr, step);
    opt_b->step(sliced.data() + split, grads.data() + split, slice_ranges(ranges, split, n), lr, step);
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), sliced.data(), n * sizeof(float)));
  auto sw = opt_whole->state(), sa = opt_a->state(), sb = opt_b->state();
  ASSERT_EQ(sw.size(), sa.size());
  for (size_t k = 0; k < sw.size(); k++) {
    EXPECT_EQ(sw[k].first, sa[k].first);
    EXPECT_EQ(0, std::memcmp(sw[k].second, sa[k].second, split * sizeof(float))) << sw[k].first;
    EXPECT_EQ(0, std::memcmp(sw[k].second + split, sb[k].second, (n - split) * sizeof(float))) << sw[k].first;
  }
}

TEST(Optimizer, AdamWSlicesAreBitIdenticalToWhole) {
  zt::OptimizerConfig cfg;
  cfg.type = zt::OptimizerType::AdamW;
  cfg.weight_decay = 0.1;
  check_slices_match_whole(cfg);
}

TEST(Optimizer, AdamL2SlicesAreBitIdenticalToWhole) {
  zt::OptimizerConfig cfg;
  cfg.type = zt::OptimizerType::Adam;
  cfg.adam_w_mode = false;
  cfg.weight_decay = 0.01;
  check_slices_match_whole(cfg);
}

TEST(Optimizer, SgdSlicesAreBitIdenticalToWhole) {
  zt::OptimizerConfig cfg;
  cfg.type = zt::OptimizerType::SGD;
  cfg.momentum = 0.9;
  cfg.weight_decay = 0.01;
  check_slices_match_whole(cfg);
}

TEST(Optimizer, StateNames) {
  zt::OptimizerConfig cfg;
  auto adam = zt::make_optimizer(cfg, 4);
  ASSERT_EQ(adam->state().size(), 2u);
  EXPECT_EQ(adam->state()[0].first, "exp_avg");
  EXPECT_EQ(adam->state()[1].first, "exp_avg_sq");
  EXPECT_EQ(adam->size(), 4u);
  cfg.type = zt::OptimizerType::SGD;
  auto sgd = zt::make_optimizer(cfg, 4);
  ASSERT_EQ(sgd->state().size(), 1u);
  EXPECT_EQ(sgd->state()[0].first, "momentum_buffer");
}

TEST(Optimizer, DecoupledDecayOnlyWhereRangesSayDecay) {
  // With a zero gradient Adam's moment update is 0, so AdamW leaves exactly p * (1 - lr*wd) where decay is on.
  zt::OptimizerConfig cfg;
  cfg.type = zt::OptimizerType::AdamW;
  cfg.weight_decay = 0.5;
  auto opt = zt::make_optimizer(cfg, 4);
  std::vector<float> p = {1, 2, 3, 4}, g = {0, 0, 0, 0};
  opt->step(p.data(), g.data(), {{0, 2, true}, {2, 3, false}}, 0.1, 1);
  EXPECT_FLOAT_EQ(p[0], 0.95f);
  EXPECT_FLOAT_EQ(p[1], 1.9f);
  EXPECT_FLOAT_EQ(p[2], 3.0f);
  EXPECT_FLOAT_EQ(p[3], 4.0f);  // not covered by any range: no decay
}

TEST(Optimizer, BadRangesAndStepAreErrors) {
  zt::OptimizerConfig cfg;
  auto opt = zt::make_optimizer(cfg, 10);
  std::vector<float> p(10, 1.0f), g(10, 0.1f);
  EXPECT_THROW(opt->step(p.data(), g.data(), {{0, 11, true}}, 0.1, 1), zt::RuntimeError);
  EXPECT_THROW(opt->step(p.data(), g.data(), {{5, 8, true}, {2, 4, true}}, 0.1, 1), zt::RuntimeError);
  EXPECT_THROW(opt->step(p.data(), g.data(), {{0, 10, true}}, 0.1, 0), zt::RuntimeError);
}

TEST(Norms, SumSquaresAndScale) {
  std::vector<float> x(100000);
  double expect = 0.0;
  for (size_t i = 0; i < x.size(); i++) {
    x[i] = static_cast<float>(i % 7) - 3.0f;
    expect += static_cast<double>(x[i]) * x[i];
  }
  EXPECT_DOUBLE_EQ(zt::sum_squares(x.data(), x.size()), expect);
  EXPECT_DOUBLE_EQ(zt::sum_squares(x.data(), 0), 0.0);
  zt::scale_inplace(x.data(), x.size(), 0.5f);
  EXPECT_DOUBLE_EQ(zt::sum_squares(x.data(), x.size()), expect / 4.0);
  EXPECT_EQ(x[6], 1.5f);
}

// ---- schedules ----

zt::SchedulerConfig warmup(zt::SchedulerType type, double min_lr, double max_lr, int64_t steps, zt::WarmupType wt) {
  zt::SchedulerConfig s;
  s.type = type;
  s.warmup_min_lr = min_lr;
  s.warmup_max_lr = max_lr;
  s.warmup_num_steps = steps;
  s.warmup_type = wt;
  return s;
}

TEST(Schedule, NoneIsBaseLr) {
  zt::SchedulerConfig s;
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 3e-4, 0), 3e-4);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 3e-4, 12345), 3e-4);
}

TEST(Schedule, WarmupLrLog) {
  auto s = warmup(zt::SchedulerType::WarmupLR, 0.0, 0.01, 100, zt::WarmupType::Log);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 0), 0.0);       // log(1)/log(100)
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 9), 0.005, 1e-15);    // log(10)/log(100) = 1/2
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 99), 0.01, 1e-15);    // last warmup step reaches max
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 100), 0.01);     // after warmup: max
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 5000), 0.01);
}

TEST(Schedule, WarmupLrLinear) {
  auto s = warmup(zt::SchedulerType::WarmupLR, 0.001, 0.011, 10, zt::WarmupType::Linear);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 0), 0.001);
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 5), 0.006, 1e-15);
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 9), 0.010, 1e-15);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 10), 0.011);
  // DeepSpeed clamps warmup_num_steps to 2.
  auto one = warmup(zt::SchedulerType::WarmupLR, 0.0, 1.0, 1, zt::WarmupType::Linear);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(one, 1.0, 1), 0.5);
}

TEST(Schedule, WarmupDecayLr) {
  auto s = warmup(zt::SchedulerType::WarmupDecayLR, 0.0, 0.01, 10, zt::WarmupType::Linear);
  s.total_num_steps = 110;
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 5), 0.005, 1e-15);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 10), 0.01);      // (110-10)/(110-10)
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 60), 0.005, 1e-15);   // 50/100
  EXPECT_NEAR(zt::scheduled_lr(s, 1.0, 109), 0.0001, 1e-15);
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 110), 0.0);      // end of decay
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 1.0, 500), 0.0);      // clamped at 0
}

TEST(Schedule, WarmupCosineLr) {
  zt::SchedulerConfig s;
  s.type = zt::SchedulerType::WarmupCosineLR;
  s.warmup_min_ratio = 0.2;
  s.cos_min_ratio = 0.01;
  s.warmup_num_steps = 10;
  s.warmup_type = zt::WarmupType::Linear;
  s.total_num_steps = 110;
  EXPECT_DOUBLE_EQ(zt::scheduled_lr(s, 0.1, 0), 0.0);         // DeepSpeed's initial lr for this scheduler
  EXPECT_NEAR(zt::scheduled_lr(s, 0.1, 5), 0.06, 1e-15);      // 0.2 + 0.5 * 0.8 = 0.6 of 0.1
  EXPECT_NEAR(zt::scheduled_lr(s, 0.1, 59), 0.0505, 1e-15);   // cos(pi/2): 0.01 + 0.99 * 0.5
  EXPECT_NEAR(zt::scheduled_lr(s, 0.1, 109), 0.001, 1e-15);   // cos(pi): cos_min_ratio
  EXPECT_NEAR(zt::scheduled_lr(s, 0.1, 10), 0.1 * (0.01 + 0.99 * (1 + std::cos(M_PI * 0.01)) / 2), 1e-15);
  s.warmup_type = zt::WarmupType::Log;
  s.warmup_num_steps = 100;
  s.total_num_steps = 200;
  EXPECT_NEAR(zt::scheduled_lr(s, 0.1, 9), 0.06, 1e-15);      // log(10)/log(100) = 0.5
}

}  // namespace
