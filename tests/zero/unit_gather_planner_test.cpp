// UnitGatherPlanner (GPU stage 3's gather/prefetch/free order) against a recording fake gatherer: the model only
// reads finished gathers, a unit is gathered once while held, prefetch follows the first step's trace within the
// bucket and live limits, persistent units stay, reuse keeps, an off-trace fetch stops prefetching.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/zero/unit_gather_planner.h"

namespace zt {
namespace {

// Records every call as "s3" (start unit 3), "f3" (finish), "d3" (drop) and checks the calls' order per unit.
class FakeGatherer : public UnitGatherer {
 public:
  explicit FakeGatherer(size_t units) : state_(units, 'a') {}
  void start(int u) override {
    EXPECT_EQ(state_[idx(u)], 'a') << "unit " << u << " started while held";
    state_[idx(u)] = 's';
    log.push_back(call('s', u));
  }
  void finish(int u) override {
    EXPECT_EQ(state_[idx(u)], 's') << "unit " << u << " finished without a start";
    state_[idx(u)] = 'f';
    log.push_back(call('f', u));
  }
  void drop(int u) override {
    EXPECT_EQ(state_[idx(u)], 'f') << "unit " << u << " dropped before its gather finished";
    state_[idx(u)] = 'a';
    log.push_back(call('d', u));
  }
  static std::string call(char what, int u) {
    std::string out(1, what);
    out += std::to_string(u);
    return out;
  }
  bool readable(int u) const { return state_[idx(u)] == 'f'; }
  bool held(int u) const { return state_[idx(u)] != 'a'; }
  std::vector<std::string> log;

 private:
  static size_t idx(int u) { return static_cast<size_t>(u); }
  std::vector<char> state_;
};

ZeroConfig zero(int64_t persistence, int64_t reuse, int64_t bucket, int64_t live) {
  ZeroConfig z;
  z.stage = 3;
  z.stage3_param_persistence_threshold = persistence;
  z.stage3_max_reuse_distance = reuse;
  z.stage3_prefetch_bucket_size = bucket;
  z.stage3_max_live_parameters = live;
  return z;
}

// The GPT-2 hooks' order for L blocks (engine/model/gpt2.h): forward 0, 1..L, L+1, 0 (LM head); backward 0 (LM
// head, no release), L+1, L..1, 0. Checks that every fetched unit is readable, and the live bound when given.
void one_pass(UnitGatherPlanner& p, FakeGatherer& g, int L, size_t live_bound = 0) {
  auto use = [&](int u, bool release) {
    p.fetch(u);
    EXPECT_TRUE(g.readable(u)) << "unit " << u << " read before its gather finished";
    if (live_bound) {
      EXPECT_LE(p.live_elements(), live_bound);
    }
    if (release) p.release(u);
  };
  for (int u = 0; u <= L + 1; ++u) use(u, true);
  use(0, true);
  use(0, false);
  for (int u = L + 1; u >= 0; --u) use(u, true);
}

// The engine's start, then a first step (recording the trace) and its end; the next step can begin.
void record_first_step(UnitGatherPlanner& p, FakeGatherer& g, int L) {
  p.end_step();
  p.begin_step();
  one_pass(p, g, L);
  p.end_step();
}

std::vector<std::string> since(const FakeGatherer& g, size_t from) {
  return std::vector<std::string>(g.log.begin() + static_cast<std::ptrdiff_t>(from), g.log.end());
}

TEST(UnitGatherPlanner, FirstStepGathersOnDemandAndFreesAfterEachUse) {
  FakeGatherer g(4);
  UnitGatherPlanner p({100, 100, 100, 100}, zero(0, 0, 1000, 1000), g);
  p.end_step();  // the engine's start: nothing persistent here
  EXPECT_TRUE(g.log.empty());
  p.begin_step();
  p.fetch(1);
  p.release(1);
  p.fetch(2);
  p.fetch(2);  // a repeated fetch (the tied unit in backward) gathers nothing more
  p.release(2);
  EXPECT_EQ(g.log, (std::vector<std::string>{"s1", "f1", "d1", "s2", "f2", "d2"}));
  EXPECT_EQ(p.live_elements(), 0u);
  EXPECT_EQ(p.peak_live_elements(), 100u);
  EXPECT_THROW(p.fetch(4), RuntimeError);
}

TEST(UnitGatherPlanner, LaterStepsPrefetchTheNextUnitBeforeItIsFetched) {
  const int L = 3;  // units 0..4
  FakeGatherer g(L + 2);
  // A bucket of one unit: each fetch starts the gather of the next unit on the trace.
  UnitGatherPlanner p(std::vector<size_t>(L + 2, 100), zero(0, 0, 100, 1000), g);
  record_first_step(p, g, L);
  EXPECT_EQ(p.trace(), (std::vector<int>{0, 1, 2, 3, 4, 0, 0, 4, 3, 2, 1, 0}));
  const size_t at = g.log.size();
  p.begin_step();
  p.fetch(0);
  EXPECT_EQ(since(g, at), (std::vector<std::string>{"s0", "f0", "s1"}));  // unit 1 in flight while 0 computes
  p.release(0);
  p.fetch(1);
  EXPECT_EQ(since(g, at), (std::vector<std::string>{"s0", "f0", "s1", "d0", "f1", "s2"}));
  p.release(1);
  // The rest of the step follows the trace: every fetch finds its unit already started (prefetched, or kept).
  auto use = [&](int u, bool release) {
    EXPECT_TRUE(g.held(u)) << "unit " << u << " was not prefetched";
    p.fetch(u);
    if (release) p.release(u);
  };
  for (int u = 2; u <= L + 1; ++u) use(u, true);
  use(0, true);
  use(0, false);
  for (int u = L + 1; u >= 0; --u) use(u, true);
  EXPECT_EQ(p.live_elements(), 0u);
}

TEST(UnitGatherPlanner, LiveUnitsStayWithinTheLimitPlusTheUnitInUse) {
  const int L = 6;
  FakeGatherer g(L + 2);
  // A roomy bucket but at most 2 units live: prefetch stops at the live limit.
  UnitGatherPlanner p(std::vector<size_t>(L + 2, 100), zero(0, 0, 100000, 200), g);
  p.end_step();
  for (int step = 0; step < 3; ++step) {
    p.begin_step();
    one_pass(p, g, L, 300);
    p.end_step();
  }
  EXPECT_LE(p.peak_live_elements(), 300u);
  EXPECT_GE(p.peak_live_elements(), 200u);  // prefetch did fill the budget
}

TEST(UnitGatherPlanner, PersistentUnitsStayGatheredAndAreRefreshedAfterEachStep) {
  FakeGatherer g(3);
  // Units smaller than 50 elements persist.
  UnitGatherPlanner p({10, 100, 20}, zero(50, 0, 1000, 1000), g);
  p.end_step();
  EXPECT_EQ(g.log, (std::vector<std::string>{"s0", "f0", "s2", "f2"}));
  EXPECT_TRUE(p.persistent(0));
  EXPECT_FALSE(p.persistent(1));
  p.begin_step();
  p.fetch(0);
  p.release(0);
  p.fetch(1);
  p.release(1);
  p.fetch(2);
  p.release(2);
  EXPECT_TRUE(p.gathered(0));
  EXPECT_FALSE(p.gathered(1));
  EXPECT_TRUE(p.gathered(2));
  const size_t at = g.log.size();
  p.end_step();  // the update made them stale: dropped, then gathered again
  EXPECT_EQ(since(g, at), (std::vector<std::string>{"d0", "d2", "s0", "f0", "s2", "f2"}));
}

TEST(UnitGatherPlanner, ReleasedUnitUsedAgainSoonIsKept) {
  const int L = 2;
  FakeGatherer g(L + 2);
  // Reuse within 250 elements (no prefetch): the LM head's unit 0 (reused at once in backward) and the final
  // LayerNorm (unit 0 twice in between: 200) are kept; blocks are used again only after the others and go.
  UnitGatherPlanner p(std::vector<size_t>(L + 2, 100), zero(0, 250, 0, 100000), g);
  record_first_step(p, g, L);
  const size_t at = g.log.size();
  p.begin_step();
  for (int u = 0; u <= L + 1; ++u) {
    p.fetch(u);
    p.release(u);
  }
  EXPECT_TRUE(p.gathered(L + 1));
  EXPECT_FALSE(p.gathered(1));
  p.fetch(0);
  p.release(0);
  EXPECT_TRUE(p.gathered(0));
  p.fetch(0);  // the LM head's backward: no new gather
  p.fetch(L + 1);
  size_t starts0 = 0;
  for (size_t i = at; i < g.log.size(); ++i) starts0 += g.log[i] == "s0";
  EXPECT_EQ(starts0, 2u);  // embeddings, then the LM head; its backward reuses it
}

TEST(UnitGatherPlanner, FetchOffTheTraceStopsPrefetchingUntilTheNextStep) {
  const int L = 2;
  FakeGatherer g(L + 2);
  UnitGatherPlanner p(std::vector<size_t>(L + 2, 100), zero(0, 0, 100, 1000), g);
  record_first_step(p, g, L);
  p.begin_step();
  const size_t at = g.log.size();
  p.fetch(2);  // the trace starts with unit 0: an eval pass, say
  p.release(2);
  p.fetch(0);
  p.release(0);
  EXPECT_EQ(since(g, at), (std::vector<std::string>{"s2", "f2", "d2", "s0", "f0", "d0"}));
  p.begin_step();  // back on the trace
  p.fetch(0);
  EXPECT_EQ(g.log.back(), "s1");
  p.drop_all();
  EXPECT_EQ(p.live_elements(), 0u);
}

}  // namespace
}  // namespace zt
