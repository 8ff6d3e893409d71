#pragma once
// Which ranks reached a collective. When a collective times out, the rank that waited can only see that its ring
// neighbour went quiet; the culprit is usually elsewhere (the rank that never called it). Every rank therefore
// posts, in the background, how many collectives of the group it has started; the timed-out rank reads the
// others' counts back and names those that are behind.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace zt {

class Store;

class ArrivalBoard {
 public:
  // store: the group's own namespace; rank: this process's index in the group; global_ranks: the group's members
  // as global ranks (for the names in the answer).
  ArrivalBoard(std::shared_ptr<Store> store, int rank, std::vector<int> global_ranks);
  ~ArrivalBoard();
  ArrivalBoard(const ArrivalBoard&) = delete;
  ArrivalBoard& operator=(const ArrivalBoard&) = delete;

  // This rank has started the collective with sequence number seq (0, 1, 2, ... in issue order). Never blocks:
  // the count reaches the store from a publisher thread.
  void arrived(uint64_t seq);

  // Global ranks that have not started collective seq, read from the store, waiting at most budget in all for
  // counts still on their way. nullopt when the store cannot answer (the master is gone, say).
  std::optional<std::vector<int>> missing(uint64_t seq, std::chrono::milliseconds budget);

 private:
  void publish_loop();
  static std::string key(int rank);

  std::shared_ptr<Store> store_;
  int rank_;
  std::vector<int> global_ranks_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t started_ = 0, published_ = 0;
  bool stopping_ = false;
  std::thread publisher_;
};

// "rank 2", "ranks 1, 3" — for messages.
std::string describe_ranks(const std::vector<int>& ranks);

}  // namespace zt
