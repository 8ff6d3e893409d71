// NvmeOptimizerState's pipeline: offload_optimizer.buffer_count buffer sets, reads running ahead of the update
// (sub-group g+1 is always read before g is updated), the same bits as CPU Adam over master and state held in
// memory, the master round-tripping through its own swap file, and the sink seeing every element once per step.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/base/error.h"
#include "engine/zero/nvme_optimizer_state.h"
#include "nvme_test_config.h"

namespace zt {
namespace {

using Event = NvmeOptimizerState::PipelineEvent;

using test::nvme_config;

// Position of the first event of kind k for sub-group g; -1 when absent.
long position(const std::vector<Event>& ev, Event::Kind k, size_t g) {
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == k && ev[i].group == g) return static_cast<long>(i);
  return -1;
}

class NvmeOptimizerStateTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    // A directory per test and process: ctest runs the tests in parallel processes, and two tests share a buffer count.
    dir_ = std::string(ZT_BINARY_DIR) + "/nvme_optimizer_state_test_" + std::to_string(GetParam()) + "_" +
           std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_P(NvmeOptimizerStateTest, PipelinesByBufferCountAndMatchesInMemoryAdam) {
  const int k = GetParam();
  const size_t group = 2048, groups = 7, n = group * (groups - 1) + 300;  // an odd last sub-group
  std::mt19937 rng(5);
  std::normal_distribution<float> dist;
  std::vector<float> initial(n), grads(n);
  for (float& p : initial) p = dist(rng);
  NvmeOptimizerState state(nvme_config(dir_, k, static_cast<int64_t>(group)), n, 0, initial.data());
  ASSERT_EQ(state.sub_group_elements(), group);
  EXPECT_EQ(state.buffer_sets(), static_cast<size_t>(k));
  EXPECT_EQ(state.buffer_bytes(), 3 * static_cast<size_t>(k) * group * sizeof(float)) << "master, m and v per set";

  // The master is in its swap file from the start: read back through the sink and straight from the file.
  std::vector<float> back(n, -1.0f);
  state.read_master([&](size_t begin, size_t len, const float* master) {
    std::copy(master, master + len, back.begin() + static_cast<long>(begin));
  });
  EXPECT_EQ(back, initial);
  const std::string master_path = state.path("master");
  EXPECT_EQ(std::filesystem::file_size(master_path), offload::io_padded_size(n * sizeof(float)))
      << "the master's file holds the partition, padded to whole 4 KiB blocks";
  std::vector<float> on_disk(n);
  std::ifstream(master_path, std::ios::binary).read(reinterpret_cast<char*>(on_disk.data()),
                                                    static_cast<std::streamsize>(n * sizeof(float)));
  EXPECT_EQ(on_disk, initial);

  std::vector<float> ref_params = initial, m(n, 0.0f), v(n, 0.0f), params(n, 0.0f);
  const std::vector<DecayRange> ranges = {{0, n / 3, true}, {n / 3, n / 2, false}, {n / 2, n, true}};
  offload::CpuAdamHyper hyper;
  hyper.lr = 1e-2;
  hyper.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    for (float& g : grads) g = dist(rng);
    std::vector<int> seen(n, 0);
    size_t next = 0;
    state.step(grads.data(), ranges, hyper, step, [&](size_t begin, size_t len, const float* master) {
      EXPECT_EQ(begin, next) << "sub-groups reach the sink in order";
      next = begin + len;
      ASSERT_LE(next, n);
      for (size_t i = begin; i < begin + len; ++i) ++seen[i];
      std::copy(master, master + len, params.begin() + static_cast<long>(begin));
    });
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(n)) << "every element once, step " << step;
    offload::cpu_adam_step(ref_params.data(), grads.data(), m.data(), v.data(), n, hyper, step, ranges);
    EXPECT_EQ(params, ref_params) << "buffer_count " << k << ", step " << step;
  }
  state.read_state("master", back.data());
  EXPECT_EQ(back, ref_params) << "the updated master is written back to its file";
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

// Checkpoint import: write_state("master") replaces the master the next step starts from.
TEST_P(NvmeOptimizerStateTest, WrittenMasterIsWhatTheNextStepUpdates) {
  const size_t n = 5000;
  std::vector<float> zeros(n, 0.0f), master(n), grads(n, 0.5f);
  for (size_t i = 0; i < n; ++i) master[i] = static_cast<float>(i % 97) / 8.0f;
  NvmeOptimizerState state(nvme_config(dir_, GetParam(), 1024), n, 1, zeros.data());
  state.write_state("master", master.data());
  offload::CpuAdamHyper hyper;
  hyper.lr = 0.1;
  std::vector<float> got(n), m(n, 0.0f), v(n, 0.0f);
  state.step(grads.data(), {{0, n, true}}, hyper, 1, [&](size_t begin, size_t len, const float* p) {
    std::copy(p, p + len, got.begin() + static_cast<long>(begin));
  });
  offload::cpu_adam_step(master.data(), grads.data(), m.data(), v.data(), n, hyper, 1, {{0, n, true}});
  EXPECT_EQ(got, master);
  EXPECT_THROW(state.read_state("momentum", got.data()), RuntimeError);
}

INSTANTIATE_TEST_SUITE_P(BufferCounts, NvmeOptimizerStateTest, ::testing::Values(2, 3, 4, 6));

}  // namespace
}  // namespace zt
