// GradientReduceSchedule (the GPU stages 0-2's reduction during backward) against a recording fake reducer: a bucket
// is launched only once all its units are complete and exactly once per micro-batch, no unit is missed, with
// overlap_comm no bucket is completed before the end of the micro-batch, without it each right after its launch, and
// the bucket boundaries follow the CPU bucketer's rule. The staging layout of stages 1-2 (one reduce-scatter per
// bucket), filled as the GPU engine fills it and reduced by a simulated reduce-scatter over several ranks, gives
// every rank exactly its partition of the summed gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/zero/gradient_reduce_schedule.h"

namespace zt {
namespace {

// Records "L<b>" (launch) and "C<b>" (complete); checks each against what the test says is complete.
class FakeReducer : public BucketReducer {
 public:
  void launch(size_t b) override {
    ASSERT_NE(schedule, nullptr);
    for (int u : schedule->buckets()[b].units)
      EXPECT_TRUE(complete_units.count(u)) << "bucket " << b << " launched before unit " << u << " was complete";
    EXPECT_FALSE(launched.count(b)) << "bucket " << b << " launched twice in one micro-batch";
    launched.insert(b);
    log.push_back("L" + std::to_string(b));
  }
  void complete(size_t b) override {
    EXPECT_TRUE(launched.count(b)) << "bucket " << b << " completed before its launch";
    EXPECT_FALSE(completed.count(b)) << "bucket " << b << " completed twice";
    if (overlap) {
      EXPECT_TRUE(finishing) << "bucket " << b << " waited for before the end of the micro-batch";
    }
    completed.insert(b);
    log.push_back("C" + std::to_string(b));
  }
  void new_round() {
    complete_units.clear();
    launched.clear();
    completed.clear();
    log.clear();
  }
  const GradientReduceSchedule* schedule = nullptr;
  std::set<int> complete_units;
  std::set<size_t> launched, completed;
  std::vector<std::string> log;
  bool overlap = true, finishing = false;
};

// GPT-2's backward completes units L+1, L, ..., 1, 0 (the tied embeddings last).
std::vector<int> backward_order(int units) {
  std::vector<int> order;
  for (int u = units - 1; u >= 0; --u) order.push_back(u);
  return order;
}

void backward(GradientReduceSchedule& s, FakeReducer& r, const std::vector<int>& arrivals) {
  for (int u : arrivals) {
    r.complete_units.insert(u);
    s.unit_ready(u);
  }
  r.finishing = true;
  s.finish();
  r.finishing = false;
}

TEST(GradientReduceSchedule, BucketsFollowTheCpuBucketersRule) {
  FakeReducer r;
  // Units 0..5 in backward order 5..0; bucket of 100 elements.
  GradientReduceSchedule s({120, 30, 40, 50, 60, 100}, backward_order(6), 100, true, r);
  // 5 (100) fills one; 4 (60) opens, 3 (50) would pass 100: closes; 3 + 2 = 90 then 1 would pass: closes;
  // 1 (30) opens, 0 (120) would pass: closes; 0 alone (larger than a bucket).
  ASSERT_EQ(s.buckets().size(), 5u);
  EXPECT_EQ(s.buckets()[0].units, std::vector<int>({5}));
  EXPECT_EQ(s.buckets()[1].units, std::vector<int>({4}));
  EXPECT_EQ(s.buckets()[2].units, std::vector<int>({2, 3}));  // ascending
  EXPECT_EQ(s.buckets()[2].elements, 90u);
  EXPECT_EQ(s.buckets()[3].units, std::vector<int>({1}));
  EXPECT_EQ(s.buckets()[4].units, std::vector<int>({0}));
  EXPECT_EQ(s.bucket_of(3), 2u);
  // One bucket for everything when the bucket is larger than the model.
  GradientReduceSchedule whole({120, 30, 40, 50, 60, 100}, backward_order(6), 1000, true, r);
  ASSERT_EQ(whole.buckets().size(), 1u);
  EXPECT_EQ(whole.buckets()[0].units, std::vector<int>({0, 1, 2, 3, 4, 5}));
}

TEST(GradientReduceSchedule, LaunchesEachBucketWhenItsLastUnitCompletesAndWaitsAtTheEnd) {
  FakeReducer r;
  GradientReduceSchedule s({120, 30, 40, 50, 60, 100}, backward_order(6), 100, true, r);
  r.schedule = &s;
  for (int micro = 0; micro < 3; ++micro) {
    r.new_round();
    backward(s, r, backward_order(6));
    EXPECT_EQ(r.log, std::vector<std::string>({"L0", "L1", "L2", "L3", "L4", "C0", "C1", "C2", "C3", "C4"}))
        << "micro-batch " << micro;
  }
}

TEST(GradientReduceSchedule, WithoutOverlapEachBucketCompletesRightAfterItsLaunch) {
  FakeReducer r;
  r.overlap = false;
  GradientReduceSchedule s({10, 20, 30, 40}, backward_order(4), 50, false, r);
  r.schedule = &s;
  backward(s, r, backward_order(4));
  // Buckets: {3} (40, then 30 would pass), {1, 2} (50), {0}.
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "C0", "L1", "C1", "L2", "C2"}));
}

TEST(GradientReduceSchedule, ABucketWaitsForEveryUnitWhateverTheArrivalOrder) {
  FakeReducer r;
  GradientReduceSchedule s({10, 10, 10, 10, 10, 10}, backward_order(6), 30, true, r);
  r.schedule = &s;
  ASSERT_EQ(s.buckets().size(), 2u);  // {3,4,5} and {0,1,2}
  // The fake checks at each launch that every unit of the bucket was complete.
  backward(s, r, {0, 5, 1, 4, 3, 2});
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "L1", "C0", "C1"}));
}

TEST(GradientReduceSchedule, AMissingUnitIsAnErrorNamingIt) {
  FakeReducer r;
  GradientReduceSchedule s({10, 10, 10, 10}, backward_order(4), 15, true, r);
  r.schedule = &s;
  for (int u : {3, 2, 0}) {
    r.complete_units.insert(u);
    s.unit_ready(u);
  }
  r.finishing = true;
  try {
    s.finish();
    FAIL() << "finish() accepted a micro-batch without unit 1";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("unit 1 never completed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.launched.count(s.bucket_of(1)), 0u);
}

TEST(GradientReduceSchedule, RepeatedUnknownAndBadOrdersAreErrors) {
  FakeReducer r;
  GradientReduceSchedule s({10, 10, 10}, backward_order(3), 100, true, r);
  r.schedule = &s;
  r.complete_units.insert(2);
  s.unit_ready(2);
  EXPECT_THROW(s.unit_ready(2), RuntimeError);
  EXPECT_THROW(s.unit_ready(3), RuntimeError);
  EXPECT_THROW(s.unit_ready(-1), RuntimeError);
  EXPECT_THROW(GradientReduceSchedule({10, 10}, {1, 1}, 10, true, r), RuntimeError);
  EXPECT_THROW(GradientReduceSchedule({10, 10}, {1}, 10, true, r), RuntimeError);
  EXPECT_THROW(GradientReduceSchedule({10, 10}, {2, 0}, 10, true, r), RuntimeError);
}

TEST(GradientReduceSchedule, ReduceAllLaunchesWhatBackwardDidNotAndStartsANewRound) {
  FakeReducer r;
  GradientReduceSchedule s({10, 10, 10, 10}, backward_order(4), 20, true, r);
  r.schedule = &s;
  ASSERT_EQ(s.buckets().size(), 2u);  // {2,3}, {0,1}
  // No unit during backward (a micro-batch not announced as the last): everything at the boundary.
  for (int u = 0; u < 4; ++u) r.complete_units.insert(u);
  r.finishing = true;
  s.reduce_all();
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "L1", "C0", "C1"}));
  EXPECT_FALSE(s.in_round());
  // Half a backward, then the rest at once: each bucket still launched once.
  r.new_round();
  r.finishing = false;
  for (int u : {3, 2, 1}) {
    r.complete_units.insert(u);
    s.unit_ready(u);
  }
  EXPECT_TRUE(s.in_round());
  EXPECT_EQ(r.log, std::vector<std::string>({"L0"}));
  r.complete_units.insert(0);
  r.finishing = true;
  s.reduce_all();
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "L1", "C0", "C1"}));
}

TEST(GradientReduceSchedule, AnAbandonedRoundStartsAfresh) {
  FakeReducer r;
  GradientReduceSchedule s({10, 10}, backward_order(2), 100, true, r);
  r.schedule = &s;
  r.complete_units.insert(1);
  s.unit_ready(1);
  s.abandon();
  r.new_round();
  backward(s, r, backward_order(2));
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "C0"}));
}

// Several ranks' gradients (flat layout) through the staging of every bucket, a reduce-scatter (sum, in rank order)
// simulated on the host, and each rank's reduced chunk written where the GPU engine writes it: every element of
// every rank's partition must be the partition of the summed gradient, written once.
void check_staging(const std::vector<UnitRange>& ranges, int world, size_t bucket_elements) {
  SCOPED_TRACE("world " + std::to_string(world) + ", bucket " + std::to_string(bucket_elements));
  const PartitionMap map(ranges, world);
  const std::vector<UnitShard>& units = map.units();
  std::vector<size_t> padded;
  for (const UnitShard& u : units) padded.push_back(u.padded);
  FakeReducer r;
  GradientReduceSchedule s(padded, backward_order(static_cast<int>(units.size())), bucket_elements, true, r);
  const BucketStaging st = bucket_staging(s.buckets(), map);
  const size_t n = ranges.back().offset + ranges.back().numel, W = static_cast<size_t>(world);
  std::vector<std::vector<float>> grads(W, std::vector<float>(n)), staging(W, std::vector<float>(st.total, std::numeric_limits<float>::quiet_NaN()));
  std::vector<float> sum(n, 0.0f);
  for (size_t k = 0; k < W; ++k)
    for (size_t i = 0; i < n; ++i) {
      grads[k][i] = static_cast<float>((i * 7 + k * 13) % 31) - 15.0f;
      sum[i] += grads[k][i];
    }
  // Fill: shard q of unit u at base + q * chunk + in_chunk[u], zero beyond numel (copy_unit_shards on the GPU).
  for (size_t k = 0; k < W; ++k)
    for (size_t b = 0; b < s.buckets().size(); ++b)
      for (int u : s.buckets()[b].units) {
        const UnitShard& us = units[static_cast<size_t>(u)];
        for (size_t q = 0; q < W; ++q)
          for (size_t i = 0; i < us.shard; ++i) {
            const size_t e = q * us.shard + i;
            staging[k][st.base[b] + q * st.chunk[b] + st.in_chunk[static_cast<size_t>(u)] + i] =
                e < us.numel ? grads[k][us.flat_offset + e] : 0.0f;
          }
      }
  for (size_t k = 0; k < W; ++k)
    for (float v : staging[k]) ASSERT_FALSE(std::isnan(v)) << "a staging element nobody wrote";
  for (size_t rank = 0; rank < W; ++rank) {
    std::vector<float> part(map.partition_numel(), std::numeric_limits<float>::quiet_NaN()), want(part.size());
    for (size_t b = 0; b < s.buckets().size(); ++b) {
      float* out = part.data() + units[static_cast<size_t>(s.buckets()[b].units.front())].local_offset;
      for (size_t i = 0; i < st.chunk[b]; ++i) {
        ASSERT_TRUE(std::isnan(out[i])) << "partition element written by two buckets";
        float acc = 0.0f;
        for (size_t k = 0; k < W; ++k) acc += staging[k][st.base[b] + rank * st.chunk[b] + i];
        out[i] = acc;
      }
    }
    map.flat_to_partition(sum.data(), want.data(), static_cast<int>(rank));
    for (size_t i = 0; i < part.size(); ++i) ASSERT_EQ(part[i], want[i]) << "rank " << rank << ", element " << i;
  }
}

TEST(GradientReduceSchedule, BucketStagingGivesEachRankItsPartitionOfTheSum) {
  const std::vector<UnitRange> ranges = {{0, 300}, {300, 37}, {337, 1000}, {1337, 64}, {1401, 5}};
  for (int world : {1, 2, 3, 4})
    for (size_t bucket : {size_t{1}, size_t{700}, size_t{2000}, size_t{1} << 20}) check_staging(ranges, world, bucket);
}

TEST(GradientReduceSchedule, BucketStagingRefusesBucketsThatAreNotOneRange) {
  const PartitionMap map(std::vector<UnitRange>{{0, 10}, {10, 10}, {20, 10}}, 2);
  ReduceBucket gap;
  gap.units = {0, 2};
  gap.elements = map.units()[0].padded + map.units()[2].padded;
  EXPECT_THROW(bucket_staging({gap}, map), RuntimeError);
  ReduceBucket wrong;
  wrong.units = {1};
  wrong.elements = 3;
  EXPECT_THROW(bucket_staging({wrong}, map), RuntimeError);
}

}  // namespace
}  // namespace zt
