#include "engine/comm/arrival_board.h"

#include <chrono>

#include "engine/comm/store.h"

namespace zt {

ArrivalBoard::ArrivalBoard(std::shared_ptr<Store> store, int rank, std::vector<int> global_ranks)
    : store_(std::move(store)), rank_(rank), global_ranks_(std::move(global_ranks)) {
  publisher_ = std::thread([this] { publish_loop(); });
}

ArrivalBoard::~ArrivalBoard() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  publisher_.join();
}

std::string ArrivalBoard::key(int rank) { return "arrived/" + std::to_string(rank); }

void ArrivalBoard::arrived(uint64_t seq) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (seq + 1 > started_) started_ = seq + 1;
  }
  cv_.notify_all();
}

void ArrivalBoard::publish_loop() {
  // Only the latest count matters, so bursts of small collectives cost one store round trip per pause, not one
  // each; a timeout is seconds long, so the count the others read is current.
  constexpr auto kPause = std::chrono::milliseconds(20);
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stopping_ || started_ != published_; });
    if (stopping_) return;
    const uint64_t value = started_;
    lk.unlock();
    try {
      store_->set_string(key(rank_), std::to_string(value));
    } catch (...) {
      // The store is gone (the master ended): the collectives themselves will report that; nothing to post to.
      lk.lock();
      published_ = value;
      stopping_ = true;
      return;
    }
    lk.lock();
    published_ = value;
    // The pause ends early on stop: a rank that is exiting (often on an error) must not linger.
    if (cv_.wait_for(lk, kPause, [&] { return stopping_; })) return;
  }
}

std::optional<std::vector<int>> ArrivalBoard::missing(uint64_t seq, std::chrono::milliseconds budget) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  auto read_count = [&](int r) -> uint64_t {
    return store_->check({key(r)}) ? std::stoull(store_->get_string(key(r))) : 0;
  };
  // First one quick pass over every rank: the other ranks time out at about the same moment, and the store's
  // master (rank 0) may be gone soon after, so what this pass reads is the answer if the store then disappears.
  std::vector<int> behind;
  try {
    for (int r = 0; r < static_cast<int>(global_ranks_.size()); ++r)
      if (r != rank_ && read_count(r) <= seq) behind.push_back(r);
  } catch (...) {
    return std::nullopt;
  }
  // A count still on its way (posted within the publisher's last pause) looks behind: give those ranks the rest
  // of the budget to show up.
  try {
    while (!behind.empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      std::vector<int> still;
      for (int r : behind)
        if (read_count(r) <= seq) still.push_back(r);
      behind.swap(still);
    }
  } catch (...) {
    // The store went away while waiting: the last reading stands.
  }
  std::vector<int> global;
  for (int r : behind) global.push_back(global_ranks_[static_cast<size_t>(r)]);
  return global;
}

std::string describe_ranks(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

}  // namespace zt
