// SwappedShardUploads (offload_param nvme on the GPU) against a real ParamSwapper over swap files and fake upload
// events: shards come back as written, a shard stays pinned until its upload is done, finished uploads give their
// buffer back without a wait, and only when no buffer is free is the oldest pinned upload waited for. Runs on the CPU.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <vector>

#include "engine/zero/cuda/swapped_shard_uploads.h"

namespace zt {
namespace {

class FakeUploads : public UploadEvents {
 public:
  bool done(int unit) override { return finished.count(unit) > 0; }
  void wait(int unit) override {
    if (finished.insert(unit).second) blocking_waits.push_back(unit);
  }
  std::set<int> finished;
  std::vector<int> blocking_waits;
};

class SwappedShardUploadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(ZT_BINARY_DIR) + "/swapped_shard_uploads_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
    map_ = std::make_unique<PartitionMap>(
        std::vector<UnitRange>{{0, 3000}, {3000, 5000}, {8000, 5000}, {13000, 70}}, 1);
    master_.resize(map_->partition_numel());
    std::mt19937 rng(5);
    std::normal_distribution<float> dist;
    for (float& x : master_) x = dist(rng);
    Config cfg;
    cfg.zero.stage = 3;
    cfg.zero.offload_param.device = OffloadDevice::Nvme;
    cfg.zero.offload_param.nvme_path = dir_;
    cfg.zero.offload_param.buffer_count = 2;
    swapper_ = std::make_unique<ParamSwapper>(*map_, cfg, 0, WorkingPrecision::F32);
    swapper_->write_partition(master_.data());
  }
  void TearDown() override {
    swapper_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool matches(const void* got, int u) const {
    const UnitShard& s = map_->units()[static_cast<size_t>(u)];
    return std::memcmp(got, master_.data() + s.local_offset, s.shard * sizeof(float)) == 0;
  }

  std::string dir_;
  std::unique_ptr<PartitionMap> map_;
  std::vector<float> master_;
  std::unique_ptr<ParamSwapper> swapper_;
};

TEST_F(SwappedShardUploadsTest, WaitsOnlyForTheOldestUploadWhenNoBufferIsFree) {
  FakeUploads uploads;
  SwappedShardUploads shards(*swapper_, uploads, map_->units().size());
  EXPECT_TRUE(matches(shards.take(0), 0));
  EXPECT_TRUE(matches(shards.take(1), 1));
  EXPECT_TRUE(uploads.blocking_waits.empty()) << "two buffers hold two shards";
  EXPECT_TRUE(matches(shards.take(2), 2));
  EXPECT_EQ(uploads.blocking_waits, std::vector<int>{0}) << "the oldest upload is waited for, only it";
  EXPECT_FALSE(shards.pinned(0));
  EXPECT_TRUE(shards.pinned(1));
  uploads.finished.insert(2);  // the copy engine finished the newer unit 2's upload on its own
  EXPECT_TRUE(matches(shards.take(3), 3));
  EXPECT_EQ(uploads.blocking_waits, std::vector<int>{0})
      << "a finished upload gives its buffer back before the oldest unfinished one is waited for";
  EXPECT_FALSE(shards.pinned(2));
  EXPECT_TRUE(shards.pinned(1));
  shards.release(3);
  shards.release(3);  // not pinned any more: nothing
  EXPECT_EQ(uploads.blocking_waits, (std::vector<int>{0, 3}));
  shards.release_all();
  EXPECT_EQ(uploads.blocking_waits, (std::vector<int>{0, 3, 1}));
  // Nothing pinned: the next step's weights can be written, and come back.
  for (float& x : master_) x *= 2.0f;
  swapper_->write_partition(master_.data());
  uploads.finished.clear();
  EXPECT_TRUE(matches(shards.take(1), 1));
}

TEST_F(SwappedShardUploadsTest, AUnitTakenAgainWaitsForItsEarlierUpload) {
  FakeUploads uploads;
  SwappedShardUploads shards(*swapper_, uploads, map_->units().size());
  shards.take(2);
  EXPECT_TRUE(matches(shards.take(2), 2));
  EXPECT_EQ(uploads.blocking_waits, std::vector<int>{2});
  EXPECT_TRUE(shards.pinned(2));
  shards.release_all();
  EXPECT_FALSE(shards.pinned(2));
}

}  // namespace
}  // namespace zt
