// NvmeOptimizerState's pipeline: offload_optimizer.buffer_count buffer sets, reads running ahead of the update
// (sub-group g+1 is always read before g is updated), and the same bits as CPU Adam over state held in memory.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <vector>

#include "engine/zero/nvme_optimizer_state.h"

namespace zt {
namespace {

using Event = NvmeOptimizerState::PipelineEvent;

Config nvme_config(const std::string& dir, int buffer_count, int64_t sub_group) {
  Config cfg;
  cfg.zero.stage = 3;
  cfg.zero.sub_group_size = sub_group;
  cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;
  cfg.zero.offload_optimizer.nvme_path = dir;
  cfg.zero.offload_optimizer.buffer_count = buffer_count;
  return cfg;
}

// Position of the first event of kind k for sub-group g; -1 when absent.
long position(const std::vector<Event>& ev, Event::Kind k, size_t g) {
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == k && ev[i].group == g) return static_cast<long>(i);
  return -1;
}

class NvmeOptimizerStateTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = std::string(ZT_BINARY_DIR) + "/nvme_optimizer_state_test_" + std::to_string(GetParam());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_P(NvmeOptimizerStateTest, PipelinesByBufferCountAndMatchesInMemoryAdam) {
  const int k = GetParam();
  const size_t group = 2048, groups = 7, n = group * (groups - 1) + 300;  // an odd last sub-group
  NvmeOptimizerState state(nvme_config(dir_, k, static_cast<int64_t>(group)), n, 0);
  ASSERT_EQ(state.sub_group_elements(), group);
  EXPECT_EQ(state.buffer_sets(), static_cast<size_t>(k));

  std::mt19937 rng(5);
  std::normal_distribution<float> dist;
  std::vector<float> params(n), grads(n);
  for (float& p : params) p = dist(rng);
  std::vector<float> ref_params = params, m(n, 0.0f), v(n, 0.0f);
  const std::vector<DecayRange> ranges = {{0, n / 3, true}, {n / 3, n / 2, false}, {n / 2, n, true}};
  offload::CpuAdamHyper hyper;
  hyper.lr = 1e-2;
  hyper.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    for (float& g : grads) g = dist(rng);
    state.step(params.data(), grads.data(), ranges, hyper, step);
    offload::cpu_adam_step(ref_params.data(), grads.data(), m.data(), v.data(), n, hyper, step, ranges);
  }
  EXPECT_EQ(params, ref_params) << "buffer_count " << k;
  std::vector<float> back(n);
  state.read_state("exp_avg", back.data());
  EXPECT_EQ(back, m);
  state.read_state("exp_avg_sq", back.data());
  EXPECT_EQ(back, v);

  const std::vector<Event>& ev = state.last_step_events();
  const size_t ahead = std::max(1, k - 2);
  std::vector<bool> set_used(static_cast<size_t>(k), false);
  for (size_t g = 0; g < groups; ++g) {
    const long update = position(ev, Event::UpdateBegin, g);
    ASSERT_GE(update, 0) << "sub-group " << g << " was not updated";
    EXPECT_LT(position(ev, Event::ReadIssued, g), update);
    // The reads of the next sub-groups are in flight while g is updated.
    for (size_t h = g + 1; h <= std::min(groups - 1, g + ahead); ++h) {
      const long read = position(ev, Event::ReadIssued, h);
      EXPECT_GE(read, 0);
      EXPECT_LT(read, update) << "buffer_count " << k << ": read of " << h << " not issued before update of " << g;
    }
    EXPECT_EQ(ev[static_cast<size_t>(update)].set, g % static_cast<size_t>(k));
    set_used[g % static_cast<size_t>(k)] = true;
  }
  EXPECT_EQ(std::count(set_used.begin(), set_used.end(), true), k) << "every buffer set takes part";
}

INSTANTIATE_TEST_SUITE_P(BufferCounts, NvmeOptimizerStateTest, ::testing::Values(2, 3, 4, 6));

}  // namespace
}  // namespace zt
