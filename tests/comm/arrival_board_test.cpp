// ArrivalBoard: which ranks of a group have not started a collective, read from the store, including when the
// store's master disappears while the answer is being read (the timed-out ranks and rank 0 give up together).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

#include "engine/comm/arrival_board.h"
#include "engine/comm/store.h"

namespace zt {
namespace {

using std::chrono::milliseconds;

// A store that works until dead is set, then throws on every request (as a TcpStore does once rank 0 has ended).
class DyingStore : public Store {
 public:
  explicit DyingStore(std::shared_ptr<Store> base) : base_(std::move(base)) {}
  std::atomic<bool> dead{false};
  std::atomic<int> requests{0};

  void set(const std::string& key, const std::vector<char>& value) override { guard(), base_->set(key, value); }
  std::vector<char> get(const std::string& key) override { return guard(), base_->get(key); }
  int64_t add(const std::string& key, int64_t delta) override { return guard(), base_->add(key, delta); }
  void wait(const std::vector<std::string>& keys, milliseconds timeout) override { guard(), base_->wait(keys, timeout); }
  bool check(const std::vector<std::string>& keys) override { return guard(), base_->check(keys); }
  milliseconds timeout() const override { return base_->timeout(); }
  std::string describe() const override { return "dying store"; }
  using Store::wait;

 private:
  void guard() {
    ++requests;
    if (dead) throw std::runtime_error("lost the connection to the rendezvous store (rank 0 ended?)");
  }
  std::shared_ptr<Store> base_;
};

// Posts counts as ranks 0..n-1 of a group whose global ranks are 10, 11, ...
void post(Store& store, int rank, uint64_t started) { store.set_string("arrived/" + std::to_string(rank), std::to_string(started)); }

TEST(ArrivalBoard, NamesTheRanksBehindAsGlobalRanks) {
  auto store = std::make_shared<LocalStore>();
  ArrivalBoard board(store, 0, {10, 11, 12, 13});
  board.arrived(0);
  post(*store, 1, 1);  // rank 11 started collective 0
  post(*store, 2, 0);  // rank 12 posted but has not started collective 0
  // rank 13 never posted
  auto behind = board.missing(0, milliseconds(100));
  ASSERT_TRUE(behind.has_value());
  EXPECT_EQ(*behind, (std::vector<int>{12, 13}));
  EXPECT_EQ(describe_ranks(*behind), "ranks 12, 13");
}

TEST(ArrivalBoard, EveryoneArrivedAnswersAtOnce) {
  auto store = std::make_shared<LocalStore>();
  ArrivalBoard board(store, 1, {0, 1, 2});
  post(*store, 0, 5);
  post(*store, 2, 5);
  auto t0 = std::chrono::steady_clock::now();
  auto behind = board.missing(4, milliseconds(2000));
  ASSERT_TRUE(behind.has_value());
  EXPECT_TRUE(behind->empty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
}

TEST(ArrivalBoard, ACountArrivingWithinTheBudgetCounts) {
  auto store = std::make_shared<LocalStore>();
  ArrivalBoard board(store, 0, {0, 1});
  std::thread late([&] {
    std::this_thread::sleep_for(milliseconds(100));
    post(*store, 1, 1);
  });
  auto behind = board.missing(0, milliseconds(2000));
  late.join();
  ASSERT_TRUE(behind.has_value());
  EXPECT_TRUE(behind->empty());
}

TEST(ArrivalBoard, StoreDyingWhileWaitingKeepsTheLastReading) {
  // Rank 1 reads rank 0 (arrived) and rank 2 (behind), then waits for rank 2's count; meanwhile rank 0, the
  // store's master, gives up and ends. The answer must still name rank 2, not fall back to "a peer".
  auto base = std::make_shared<LocalStore>();
  auto store = std::make_shared<DyingStore>(base);
  ArrivalBoard board(store, 1, {0, 1, 2});
  post(*base, 0, 1);
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(150));
    store->dead = true;
  });
  auto behind = board.missing(0, milliseconds(2000));
  killer.join();
  ASSERT_TRUE(behind.has_value());
  EXPECT_EQ(*behind, (std::vector<int>{2}));
}

TEST(ArrivalBoard, StoreAlreadyGoneGivesNoAnswer) {
  auto base = std::make_shared<LocalStore>();
  auto store = std::make_shared<DyingStore>(base);
  ArrivalBoard board(store, 0, {0, 1});
  store->dead = true;
  EXPECT_FALSE(board.missing(0, milliseconds(100)).has_value());
}

TEST(ArrivalBoard, PublishesTheLatestCount) {
  auto store = std::make_shared<LocalStore>();
  {
    ArrivalBoard board(store, 1, {0, 1});
    for (uint64_t s = 0; s < 50; ++s) board.arrived(s);
    ArrivalBoard reader(store, 0, {0, 1});
    auto behind = reader.missing(49, milliseconds(2000));
    ASSERT_TRUE(behind.has_value());
    EXPECT_TRUE(behind->empty());
    behind = reader.missing(50, milliseconds(50));
    ASSERT_TRUE(behind.has_value());
    EXPECT_EQ(*behind, (std::vector<int>{1}));
  }
}

}  // namespace
}  // namespace zt
