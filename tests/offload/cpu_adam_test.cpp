// CPU Adam against the reference optimizer (engine/optim make_optimizer): every ISA this CPU has, one and several
// threads, sizes with odd tails, AdamW and Adam with L2, decay ranges, three steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/base/error.h"
#include "engine/optim/optimizer.h"
#include "offload/cpu_adam.h"

namespace zt::offload {
namespace {

struct AdamState {
  std::vector<float> params, exp_avg, exp_avg_sq;
};

std::vector<std::vector<float>> random_grads(size_t n, int steps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> grads(steps, std::vector<float>(n));
  for (auto& g : grads) {
    for (float& x : g) x = normal(rng) * 0.1f;
  }
  return grads;
}

std::vector<float> random_params(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> p(n);
  for (float& x : p) x = uni(rng);
  return p;
}

OptimizerConfig reference_config(bool adamw) {
  OptimizerConfig cfg;
  cfg.type = OptimizerType::Adam;
  cfg.adam_w_mode = adamw;
  cfg.lr = 3e-3;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  return cfg;
}

CpuAdamHyper hyper_from(const OptimizerConfig& cfg) {
  CpuAdamHyper h;
  h.lr = cfg.lr;
  h.beta1 = cfg.beta1;
  h.beta2 = cfg.beta2;
  h.eps = cfg.eps;
  h.weight_decay = cfg.weight_decay;
  h.adamw_mode = cfg.adam_w_mode;
  return h;
}

AdamState run_reference(size_t n, bool adamw, const std::vector<DecayRange>& ranges, const std::vector<float>& p0,
                  const std::vector<std::vector<float>>& grads) {
  OptimizerConfig cfg = reference_config(adamw);
  auto opt = make_optimizer(cfg, n);
  AdamState r{p0, {}, {}};
  for (size_t s = 0; s < grads.size(); s++) opt->step(r.params.data(), grads[s].data(), ranges, cfg.lr, s + 1);
  auto state = opt->state();
  r.exp_avg.assign(state[0].second, state[0].second + n);
  r.exp_avg_sq.assign(state[1].second, state[1].second + n);
  return r;
}

// ranges == nullptr: the whole slice with decay through the per-call flag; else the range overload.
AdamState run_cpu_adam(CpuIsa isa, int threads, size_t n, bool adamw, const std::vector<DecayRange>* ranges,
                 const std::vector<float>& p0, const std::vector<std::vector<float>>& grads) {
  CpuAdamHyper h = hyper_from(reference_config(adamw));
  AdamState r{p0, std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f)};
  for (size_t s = 0; s < grads.size(); s++) {
    if (ranges == nullptr) {
      cpu_adam_step_with(isa, threads, r.params.data(), grads[s].data(), r.exp_avg.data(), r.exp_avg_sq.data(), n,
                         h, static_cast<int64_t>(s + 1), true);
    } else {
      cpu_adam_step(r.params.data(), grads[s].data(), r.exp_avg.data(), r.exp_avg_sq.data(), n, h,
                    static_cast<int64_t>(s + 1), *ranges);
    }
  }
  return r;
}

// |a-b| <= 1e-7 * max(|a|,|b|) + 1e-30 per element; also counts bitwise differences.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                  size_t* bit_diffs) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++) {
    float a = got[i], b = want[i];
    ASSERT_LE(std::fabs(a - b), 1e-7f * std::max(std::fabs(a), std::fabs(b)) + 1e-30f)
        << what << "[" << i << "]: " << a << " vs " << b;
    if (std::memcmp(&a, &b, sizeof a) != 0) (*bit_diffs)++;
  }
}

std::vector<CpuIsa> supported_isas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    if (cpu_supports(isa)) isas.push_back(isa);
  }
  return isas;
}

TEST(CpuAdam, MatchesReferenceEveryIsaSizeAndMode) {
  const size_t sizes[] = {1, 7, 8, 15, 16, 17, 31, 33, 1000, 65536 + 5, 300001};
  for (size_t n : sizes) {
    auto p0 = random_params(n, static_cast<uint32_t>(n));
    auto grads = random_grads(n, 3, static_cast<uint32_t>(n) + 1);
    for (bool adamw : {true, false}) {
      AdamState want = run_reference(n, adamw, {{0, n, true}}, p0, grads);
      for (CpuIsa isa : supported_isas()) {
        for (int threads : {1, 3}) {
          AdamState got = run_cpu_adam(isa, threads, n, adamw, nullptr, p0, grads);
          std::string what = std::string(cpu_isa_name(isa)) + " n=" + std::to_string(n) +
                             (adamw ? " adamw" : " adam+l2") + " threads=" + std::to_string(threads);
          size_t diffs = 0;
          expect_close(got.params, want.params, what + " params", &diffs);
          expect_close(got.exp_avg, want.exp_avg, what + " exp_avg", &diffs);
          expect_close(got.exp_avg_sq, want.exp_avg_sq, what + " exp_avg_sq", &diffs);
          // The design claim: same operations in the same order, no FMA, so the bits are equal too.
          EXPECT_EQ(diffs, 0u) << what;
        }
      }
    }
  }
}

TEST(CpuAdam, DecayRangesMatchReference) {
  const size_t n = 100003;
  std::vector<DecayRange> ranges = {{10, 5000, true}, {5000, 7001, false}, {9000, 90001, true}};
  auto p0 = random_params(n, 1);
  auto grads = random_grads(n, 3, 2);
  for (bool adamw : {true, false}) {
    AdamState want = run_reference(n, adamw, ranges, p0, grads);
    AdamState got = run_cpu_adam(cpu_adam_isa(), 0, n, adamw, &ranges, p0, grads);
    size_t diffs = 0;
    expect_close(got.params, want.params, "params", &diffs);
    expect_close(got.exp_avg, want.exp_avg, "exp_avg", &diffs);
    expect_close(got.exp_avg_sq, want.exp_avg_sq, "exp_avg_sq", &diffs);
    EXPECT_EQ(diffs, 0u);
  }
  // Decay really differs from no decay (the test can fail).
  AdamState with_decay = run_cpu_adam(cpu_adam_isa(), 0, n, true, nullptr, p0, grads);
  AdamState without_decay = run_reference(n, true, {}, p0, grads);
  EXPECT_NE(with_decay.params[20], without_decay.params[20]);
}

TEST(CpuAdam, BadInputsThrow) {
  std::vector<float> p(10), g(10), m(10), v(10);
  CpuAdamHyper h;
  EXPECT_THROW(cpu_adam_step(p.data(), g.data(), m.data(), v.data(), 10, h, 0, true), RuntimeError);
  std::vector<DecayRange> overlapping = {{0, 6, true}, {5, 8, true}};
  EXPECT_THROW(cpu_adam_step(p.data(), g.data(), m.data(), v.data(), 10, h, 1, overlapping), RuntimeError);
  std::vector<DecayRange> beyond = {{0, 11, true}};
  EXPECT_THROW(cpu_adam_step(p.data(), g.data(), m.data(), v.data(), 10, h, 1, beyond), RuntimeError);
}

TEST(CpuAdam, DispatchPicksTheWidestIsa) {
  CpuIsa isa = cpu_adam_isa();
  EXPECT_TRUE(cpu_supports(isa));
  if (cpu_supports(CpuIsa::Avx512)) {
    EXPECT_EQ(isa, CpuIsa::Avx512);
  } else if (cpu_supports(CpuIsa::Avx2)) {
    EXPECT_EQ(isa, CpuIsa::Avx2);
  }
}

}  // namespace
}  // namespace zt::offload
