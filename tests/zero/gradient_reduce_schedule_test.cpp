// GradientReduceSchedule (the GPU stages 0-2's reduction during backward) against a recording fake reducer: a bucket
// is launched only once all its units are complete and exactly once per micro-batch, no unit is missed, with
// overlap_comm no bucket is completed before the end of the micro-batch, without it each right after its launch, and
// the bucket boundaries follow the CPU bucketer's rule.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace zt
