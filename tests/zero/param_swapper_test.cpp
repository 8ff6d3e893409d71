// ParamSwapper, the stage-3 parameter swap file: shards come back as written (fp32 and bf16 bits, also when the
// partition arrives range by range), at most max_in_cpu elements are ever in memory, read-ahead stops at the budget
// instead of evicting what was read ahead, pinned shards are never evicted, and impossible settings are rejected
// naming the key.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/base/error.h"
#include "engine/zero/param_swapper.h"

namespace zt {
namespace {

class ParamSwapperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One directory per test: ctest runs them as separate processes, in parallel.
    dir_ = std::string(ZT_BINARY_DIR) + "/param_swapper_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
    // Unit sizes that are not multiples of the 4096-byte alignment; world 2, this is rank 1.
    map_ = std::make_unique<PartitionMap>(
        std::vector<UnitRange>{{0, 3000}, {3000, 5000}, {8000, 5000}, {13000, 70}}, 2);
    master_.resize(map_->partition_numel());
    std::mt19937 rng(3);
    std::normal_distribution<float> dist;
    for (float& x : master_) x = dist(rng);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Config config(int buffer_count, int64_t max_in_cpu) const {
    Config cfg;
    cfg.zero.stage = 3;
    cfg.zero.offload_param.device = OffloadDevice::Nvme;
    cfg.zero.offload_param.nvme_path = dir_;
    cfg.zero.offload_param.buffer_count = buffer_count;
    cfg.zero.offload_param.max_in_cpu = max_in_cpu;
    return cfg;
  }
  size_t shard(int u) const { return map_->units()[static_cast<size_t>(u)].shard; }
  const float* expected(int u) const { return master_.data() + map_->units()[static_cast<size_t>(u)].local_offset; }

  std::string dir_;
  std::unique_ptr<PartitionMap> map_;
  std::vector<float> master_;
};

TEST_F(ParamSwapperTest, ShardsComeBackAsWrittenWithinMaxInCpu) {
  const int64_t budget = static_cast<int64_t>(shard(1) + shard(0));  // two of the largest never fit together
  ParamSwapper sw(*map_, config(3, budget), 1, WorkingPrecision::F32);
  sw.write_partition(master_.data());
  for (int round = 0; round < 2; ++round) {
    for (int u : {0, 1, 2, 3, 1, 0}) {
      const float* got = static_cast<const float*>(sw.acquire(u));
      EXPECT_EQ(std::memcmp(got, expected(u), shard(u) * sizeof(float)), 0) << "unit " << u;
      sw.unpin(u);
      EXPECT_LE(sw.peak_resident_elements(), static_cast<size_t>(budget));
    }
    for (float& x : master_) x += 1.0f;  // an optimizer step
    sw.write_partition(master_.data());
  }
}

TEST_F(ParamSwapperTest, ReadAheadStopsAtTheBudgetAndPinnedShardsStay) {
  ParamSwapper sw(*map_, config(2, static_cast<int64_t>(shard(1) + shard(2))), 1, WorkingPrecision::F32);
  sw.write_partition(master_.data());
  EXPECT_TRUE(sw.read_ahead(1));
  EXPECT_TRUE(sw.read_ahead(2));
  EXPECT_FALSE(sw.read_ahead(0)) << "both buffers hold shards read ahead and not used yet";
  const size_t reads = sw.reads();
  const void* one = sw.acquire(1);  // already read: no new read
  EXPECT_EQ(sw.reads(), reads);
  EXPECT_TRUE(sw.can_acquire(0));  // by evicting 2, which is not pinned
  sw.acquire(0);
  EXPECT_EQ(std::memcmp(one, expected(1), shard(1) * sizeof(float)), 0) << "the pinned shard was not evicted";
  EXPECT_FALSE(sw.can_acquire(2)) << "both buffers are pinned";
  EXPECT_THROW(sw.acquire(2), RuntimeError);
  EXPECT_THROW(sw.write_partition(master_.data()), RuntimeError) << "written back while being gathered";
  sw.unpin(0);
  sw.unpin(1);
  EXPECT_THROW(sw.unpin(1), RuntimeError);
  const float* two = static_cast<const float*>(sw.acquire(2));
  EXPECT_EQ(std::memcmp(two, expected(2), shard(2) * sizeof(float)), 0);
  sw.unpin(2);
}

// The optimizer hands the master over in sub-groups that do not line up with the units: each shard is written once
// all of it has arrived, through 1 buffer (every unit waits for the previous write) or several.
TEST_F(ParamSwapperTest, WrittenRangeByRangeAsTheOptimizerHandsItOver) {
  for (WorkingPrecision precision : {WorkingPrecision::F32, WorkingPrecision::BF16}) {
    for (int buffers : {1, 3}) {
      ParamSwapper sw(*map_, config(buffers, 1000000), 1, precision);
      sw.write_partition(master_.data());
      sw.acquire(0);  // cached (unpinned below): the write-back must drop it
      sw.unpin(0);
      for (float& x : master_) x += 1.0f;  // an optimizer step
      const size_t n = master_.size();
      for (size_t at = 0; at < n; at += 777) sw.write_range(at, std::min<size_t>(777, n - at), master_.data() + at);
      sw.finish_write();
      for (int u = 0; u < 4; ++u) {
        const size_t bytes = shard(u) * (is_mixed(precision) ? sizeof(uint16_t) : sizeof(float));
        std::vector<uint16_t> bits(shard(u));
        const void* want = expected(u);
        if (is_mixed(precision)) {
          to_working_bits(expected(u), bits.data(), shard(u), precision);
          want = bits.data();
        }
        EXPECT_EQ(std::memcmp(sw.acquire(u), want, bytes), 0) << "unit " << u << ", " << buffers << " buffers";
        sw.unpin(u);
      }
    }
  }
}

TEST_F(ParamSwapperTest, WriteBackOutOfOrderOrIncompleteIsAnError) {
  ParamSwapper sw(*map_, config(2, 1000000), 1, WorkingPrecision::F32);
  sw.write_range(0, 100, master_.data());
  EXPECT_THROW(sw.write_range(200, 100, master_.data() + 200), RuntimeError) << "a gap";
  EXPECT_THROW(sw.finish_write(), RuntimeError) << "100 elements of the partition";
  sw.finish_write();  // nothing begun: a skipped step
}

TEST_F(ParamSwapperTest, Bf16ShardsHoldTheWorkingBits) {
  ParamSwapper sw(*map_, config(5, 1000000), 1, WorkingPrecision::BF16);
  sw.write_partition(master_.data());
  for (int u = 0; u < 4; ++u) {
    std::vector<uint16_t> want(shard(u));
    to_working_bits(expected(u), want.data(), shard(u), WorkingPrecision::BF16);
    EXPECT_EQ(std::memcmp(sw.acquire(u), want.data(), want.size() * sizeof(uint16_t)), 0) << "unit " << u;
    sw.unpin(u);
  }
}

TEST_F(ParamSwapperTest, BuffersSmallerThanTheLargestShardAreAConfigError) {
  Config cfg = config(5, 1000000);
  cfg.zero.offload_param.buffer_size = static_cast<int64_t>(shard(1)) - 1;
  try {
    ParamSwapper sw(*map_, cfg, 1, WorkingPrecision::F32);
    FAIL() << "accepted a buffer_size below the largest shard";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("zero_optimization.offload_param.buffer_size"), std::string::npos) << what;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_)) << "no swap file is created for a rejected setting";
}

}  // namespace
}  // namespace zt
