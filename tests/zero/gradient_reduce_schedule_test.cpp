// GradientReduceSchedule (the GPU stages 0-2's reduction during backward) against a recording fake reducer: a bucket
// is launched only once all its units are complete and exactly once per micro-batch, no unit is missed, with
// overlap_comm no bucket is completed before the end of the micro-batch, without it each right after its launch, and
// the bucket boundaries follow the CPU bucketer's rule. The staging layout of stages 1-2 (one reduce-scatter per
// bucket), filled as the GPU engine fills it and reduced by a simulated reduce-scatter over several ranks, gives
// every rank exactly its partition of the summed gradient. Stage 2's few shared staging slots: a slot is refilled only
// after its previous bucket's collective completed (a simulated collective that reads its slot at completion would
// see another bucket's data otherwise), micro-batches still sum exactly, and the chunked allgather's plan puts every
// unit's gathered weights back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
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

std::vector<size_t> padded_sizes(const PartitionMap& map) {
  std::vector<size_t> padded;
  for (const UnitShard& u : map.units()) padded.push_back(u.padded);
  return padded;
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
  FakeReducer r;
  GradientReduceSchedule s(padded_sizes(map), backward_order(static_cast<int>(units.size())), bucket_elements, true, r);
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

// Stage 2 as the GPU engine runs it on `world` ranks in lockstep: per unit in backward order claim_staging, its shards
// into the bucket's shared slot, unit_ready; the fake collective (a sum over ranks) reads the slot only when the
// bucket is completed, as an asynchronous collective may, and adds this rank's chunk into the gradient partition.
// Over two micro-batches every rank's partition must be the partition of the summed gradients, and each slot must
// hold at completion what was staged at launch.
class SharedStagingReducer : public BucketReducer {
 public:
  SharedStagingReducer(const PartitionMap& map, size_t world) : map_(map), world_(world) {}
  void launch(size_t b) override {
    ASSERT_EQ(in_flight.count(b), 0u) << "bucket " << b << " launched twice";
    in_flight[b] = slot_contents(b);
    log.push_back("L" + std::to_string(b));
  }
  void complete(size_t b) override {
    ASSERT_EQ(in_flight.count(b), 1u) << "bucket " << b << " completed before its launch";
    EXPECT_EQ(slot_contents(b), in_flight[b]) << "bucket " << b << "'s slot was refilled before its collective completed";
    in_flight.erase(b);
    const size_t chunk = staging->chunk[b];
    const size_t first = map_.units()[static_cast<size_t>(schedule->buckets()[b].units.front())].local_offset;
    for (size_t rank = 0; rank < world_; ++rank)
      for (size_t i = 0; i < chunk; ++i) {
        float acc = 0.0f;
        for (size_t k = 0; k < world_; ++k) acc += slots[k][staging->base[b] + rank * chunk + i];
        partitions[rank][first + i] += acc;
      }
    log.push_back("C" + std::to_string(b));
  }
  std::vector<float> slot_contents(size_t b) const {
    std::vector<float> all;
    const size_t size = staging->chunk[b] * world_;
    for (size_t k = 0; k < world_; ++k)
      all.insert(all.end(), slots[k].begin() + static_cast<std::ptrdiff_t>(staging->base[b]),
                 slots[k].begin() + static_cast<std::ptrdiff_t>(staging->base[b] + size));
    return all;
  }
  const GradientReduceSchedule* schedule = nullptr;
  const BucketStaging* staging = nullptr;
  std::vector<std::vector<float>> slots, partitions;
  std::map<size_t, std::vector<float>> in_flight;
  std::vector<std::string> log;

 private:
  const PartitionMap& map_;
  size_t world_;
};

void check_shared_staging(const std::vector<UnitRange>& ranges, int world, size_t bucket_elements, size_t n_slots,
                          bool overlap) {
  SCOPED_TRACE("world " + std::to_string(world) + ", bucket " + std::to_string(bucket_elements) + ", slots " +
               std::to_string(n_slots) + (overlap ? ", overlap" : ""));
  const PartitionMap map(ranges, world);
  const std::vector<UnitShard>& units = map.units();
  size_t all_padded = 0, slots_total = 0;
  const size_t W = static_cast<size_t>(world), n = ranges.back().offset + ranges.back().numel;
  SharedStagingReducer r(map, W);
  GradientReduceSchedule s(padded_sizes(map), backward_order(static_cast<int>(units.size())), bucket_elements, overlap,
                           r, n_slots);
  const BucketStaging st = shared_bucket_staging(s.buckets(), map, s.staging_slots());
  std::vector<size_t> slot_largest(n_slots, 0);
  for (size_t b = 0; b < s.buckets().size(); ++b)
    slot_largest[b % n_slots] = std::max(slot_largest[b % n_slots], s.buckets()[b].elements);
  for (size_t largest : slot_largest) slots_total += largest;
  for (const UnitShard& u : units) all_padded += u.padded;
  EXPECT_EQ(st.total, slots_total);
  EXPECT_LE(st.total, all_padded);
  if (n_slots < s.buckets().size()) {
    EXPECT_LT(st.total, all_padded);
  }
  r.schedule = &s;
  r.staging = &st;
  r.slots.assign(W, std::vector<float>(st.total, 0.0f));
  r.partitions.assign(W, std::vector<float>(map.partition_numel(), 0.0f));
  std::vector<float> sum(n, 0.0f);
  for (int micro = 0; micro < 2; ++micro) {
    std::vector<std::vector<float>> grads(W, std::vector<float>(n));
    for (size_t k = 0; k < W; ++k)
      for (size_t i = 0; i < n; ++i) {
        grads[k][i] = static_cast<float>((i * 7 + k * 13 + static_cast<size_t>(micro) * 5) % 31) - 15.0f;
        sum[i] += grads[k][i];
      }
    for (int u : backward_order(static_cast<int>(units.size()))) {
      s.claim_staging(u);
      const size_t b = s.bucket_of(u);
      const UnitShard& us = units[static_cast<size_t>(u)];
      for (size_t k = 0; k < W; ++k)
        for (size_t q = 0; q < W; ++q)
          for (size_t i = 0; i < us.shard; ++i) {
            const size_t e = q * us.shard + i;
            r.slots[k][st.base[b] + q * st.chunk[b] + st.in_chunk[static_cast<size_t>(u)] + i] =
                e < us.numel ? grads[k][us.flat_offset + e] : 0.0f;
          }
      s.unit_ready(u);
    }
    s.finish();
    EXPECT_TRUE(r.in_flight.empty()) << "a bucket never completed";
  }
  for (size_t rank = 0; rank < W; ++rank) {
    std::vector<float> want(map.partition_numel());
    map.flat_to_partition(sum.data(), want.data(), static_cast<int>(rank));
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(r.partitions[rank][i], want[i]) << "rank " << rank << ", " << i;
  }
}

TEST(GradientReduceSchedule, SharedStagingSlotsSumExactlyAndAreRefilledOnlyAfterTheirCollective) {
  const std::vector<UnitRange> ranges = {{0, 300}, {300, 37}, {337, 1000}, {1337, 64}, {1401, 5}, {1406, 90}};
  for (int world : {1, 2, 3})
    for (size_t bucket : {size_t{1}, size_t{400}, size_t{1} << 20})
      for (size_t slots : {size_t{1}, size_t{2}, size_t{3}})
        for (bool overlap : {true, false}) check_shared_staging(ranges, world, bucket, slots, overlap);
}

// With two slots and overlap_comm, bucket b's first unit completes bucket b-2 (its slot's previous bucket), so one
// bucket is in flight while the next is filled; the rest complete at the end of the micro-batch.
TEST(GradientReduceSchedule, TwoSlotsCompleteABucketWhenItsSlotIsNeededAgain) {
  const PartitionMap map(std::vector<UnitRange>{{0, 64}, {64, 64}, {128, 64}, {192, 64}, {256, 64}}, 1);
  SharedStagingReducer r(map, 1);
  GradientReduceSchedule s(padded_sizes(map), backward_order(5), 64, true, r, 2);
  const BucketStaging st = shared_bucket_staging(s.buckets(), map, 2);
  r.schedule = &s;
  r.staging = &st;
  r.slots.assign(1, std::vector<float>(st.total, 0.0f));
  r.partitions.assign(1, std::vector<float>(map.partition_numel(), 0.0f));
  ASSERT_EQ(s.buckets().size(), 5u);
  EXPECT_EQ(st.total, 128u);
  for (int u = 4; u >= 0; --u) {
    s.claim_staging(u);
    s.unit_ready(u);
  }
  s.finish();
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "L1", "C0", "L2", "C1", "L3", "C2", "L4", "C3", "C4"}));
  // Without overlap_comm each completes at its launch; no claim has to wait.
  r.log.clear();
  GradientReduceSchedule serial(padded_sizes(map), backward_order(5), 64, false, r, 2);
  r.schedule = &serial;
  for (int u = 4; u >= 0; --u) {
    serial.claim_staging(u);
    serial.unit_ready(u);
  }
  serial.finish();
  EXPECT_EQ(r.log, std::vector<std::string>({"L0", "C0", "L1", "C1", "L2", "C2", "L3", "C3", "L4", "C4"}));
}

TEST(GradientReduceSchedule, ASlotStillBeingFilledIsAnErrorNotAnOverwrite) {
  const PartitionMap map(std::vector<UnitRange>{{0, 64}, {64, 64}, {128, 64}, {192, 64}}, 1);
  SharedStagingReducer r(map, 1);
  // Buckets {3, 2} and {1, 0} share the one slot; unit 1 arriving while unit 2 is missing would overwrite bucket 0.
  GradientReduceSchedule s(padded_sizes(map), backward_order(4), 128, true, r, 1);
  ASSERT_EQ(s.buckets().size(), 2u);
  s.claim_staging(3);
  s.unit_ready(3);
  try {
    s.claim_staging(1);
    FAIL() << "no error";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("still filling"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.claim_staging(4), RuntimeError);
  EXPECT_THROW(shared_bucket_staging(s.buckets(), map, 0), RuntimeError);
}

// Each rank's partition gathered chunk by chunk through a buffer of `capacity` elements (refilled per chunk, NaN
// beforehand) must give every unit's weights back; chunks are consecutive, fit, and are greedy.
TEST(GradientReduceSchedule, GatherChunksPutEveryUnitBackThroughABoundedBuffer) {
  const std::vector<UnitRange> ranges = {{0, 300}, {300, 37}, {337, 1000}, {1337, 64}, {1401, 5}};
  const size_t n = 1406;
  std::vector<float> flat(n);
  for (size_t i = 0; i < n; ++i) flat[i] = static_cast<float>(i % 97) - 40.0f;
  for (int world : {1, 2, 3}) {
    const PartitionMap map(ranges, world);
    const std::vector<UnitShard>& units = map.units();
    size_t largest = 0;
    for (const UnitShard& u : units) largest = std::max(largest, u.padded);
    std::vector<std::vector<float>> parts(static_cast<size_t>(world), std::vector<float>(map.partition_numel()));
    for (int k = 0; k < world; ++k) map.flat_to_partition(flat.data(), parts[static_cast<size_t>(k)].data(), k);
    for (size_t capacity : {largest, largest + 100, 2 * largest, size_t{1} << 20}) {
      SCOPED_TRACE("world " + std::to_string(world) + ", capacity " + std::to_string(capacity));
      const std::vector<GatherChunk> chunks = plan_gather_chunks(map, capacity);
      std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
      size_t next = 0;
      for (const GatherChunk& c : chunks) {
        ASSERT_EQ(c.first, next);
        ASSERT_GT(c.end, c.first);
        ASSERT_LE(c.padded, capacity);
        if (c.end < units.size()) {
          EXPECT_GT(c.padded + units[c.end].padded, capacity) << "a chunk could hold more";
        }
        next = c.end;
        std::vector<float> buffer(capacity, std::numeric_limits<float>::quiet_NaN());
        for (size_t u = c.first; u < c.end; ++u)
          for (size_t q = 0; q < static_cast<size_t>(world); ++q)
            for (size_t i = 0; i < units[u].shard; ++i)
              buffer[c.at[u - c.first] + q * units[u].shard + i] = parts[q][units[u].local_offset + i];
        for (size_t u = c.first; u < c.end; ++u)
          for (size_t i = 0; i < units[u].numel; ++i) out[units[u].flat_offset + i] = buffer[c.at[u - c.first] + i];
      }
      EXPECT_EQ(next, units.size());
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], flat[i]) << "element " << i;
      if (capacity == largest && world == 1) {
        EXPECT_GE(chunks.size(), 3u);
      }
    }
    EXPECT_THROW(plan_gather_chunks(map, largest - 1), RuntimeError);
  }
}

}  // namespace
}  // namespace zt
