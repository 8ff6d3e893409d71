// The io_uring AIO backend: intra_op_parallelism rings, each driven by its own thread with up to queue_depth
// transfers in flight. A request's chunks are dealt round-robin over the rings so one large read uses them all.
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <unordered_set>

#include "engine/base/error.h"
#include "offload/aio_chunks.h"

namespace zt::offload::detail {
namespace {

class UringWorker {
 public:
  UringWorker(int queue_depth, bool single_submit, bool overlap_events)
      : queue_depth_(queue_depth), single_submit_(single_submit), overlap_events_(overlap_events) {
    int rc = io_uring_queue_init(static_cast<unsigned>(queue_depth), &ring_, 0);
    if (rc < 0) {
      throw RuntimeError(std::string("io_uring_queue_init(") + std::to_string(queue_depth) +
                         ") failed: " + std::strerror(-rc));
    }
    // One eventfd wakes the worker for both reasons it waits: the kernel signals it on every completion
    // (io_uring_register_eventfd) and push() on every new request. Waiting in io_uring_wait_cqe instead would
    // leave a new request queued until some transfer in flight completes.
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0 || (rc = io_uring_register_eventfd(&ring_, wake_fd_)) < 0) {
      const std::string why = wake_fd_ < 0 ? std::strerror(errno) : std::strerror(-rc);
      if (wake_fd_ >= 0) ::close(wake_fd_);
      io_uring_queue_exit(&ring_);
      throw RuntimeError("io_uring completion eventfd: " + why);
    }
    thread_ = std::thread([this] { run(); });
  }

  ~UringWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake();
    thread_.join();
    if (ring_open_) io_uring_queue_exit(&ring_);
    ::close(wake_fd_);
  }

  void push(std::unique_ptr<Chunk> chunk) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!broken_.empty()) {
        fail_chunk(*chunk, broken_);
        return;
      }
      incoming_.push_back(std::move(chunk));
    }
    wake();
  }

 private:
  // A ring-level failure (not a failed transfer, which is the chunk's own error) fails every chunk this worker
  // holds and every later one, so no wait() can hang and no exception escapes the thread.
  void run() {
    try {
      drive();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = std::string("io_uring ring failed: ") + e.what();
      // Tearing the ring down waits for the kernel to finish with every buffer still in flight.
      io_uring_queue_exit(&ring_);
      ring_open_ = false;
      for (Chunk* c : in_flight_chunks_) {
        fail_chunk(*c, broken_);
        delete c;
      }
      in_flight_chunks_.clear();
      for (auto& c : pending_) fail_chunk(*c, broken_);
      pending_.clear();
      for (auto& c : incoming_) fail_chunk(*c, broken_);
      incoming_.clear();
    }
  }

  void wake() {
    const uint64_t one = 1;
    while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  // Blocks until a completion or a push (or a stop) happened since the counter was last read. The counter keeps
  // what came in meanwhile, so no wake-up is lost; an extra one only costs a loop.
  void sleep_until_woken() {
    uint64_t count;
    while (::read(wake_fd_, &count, sizeof count) < 0) {
      if (errno != EINTR) throw RuntimeError(std::string("io_uring worker: read of its eventfd failed: ") +
                                             std::strerror(errno));
    }
  }

  // Drains on stop: a chunk is never dropped, so every wait() returns.
  void drive() {
    for (;;) {
      bool stop;
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop = stop_;
        while (!incoming_.empty()) {
          pending_.push_back(std::move(incoming_.front()));
          incoming_.pop_front();
        }
      }
      if (stop && in_flight_ == 0 && pending_.empty()) return;
      submit_pending();
      if (!overlap_events_) {
        while (in_flight_ > 0) reap(true);
        if (pending_.empty()) sleep_until_woken();
        continue;
      }
      if (reap(/*wait_for_one=*/false) == 0) sleep_until_woken();
    }
  }

  void submit_pending() {
    int prepared = 0;
    while (!pending_.empty() && in_flight_ < queue_depth_) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      Chunk* c = pending_.front().release();
      pending_.pop_front();
      if (c->op == IoOp::Read) {
        io_uring_prep_read(sqe, c->fd, c->next_buf(), static_cast<unsigned>(c->next_len()),
                           static_cast<uint64_t>(c->next_offset()));
      } else {
        io_uring_prep_write(sqe, c->fd, c->next_buf(), static_cast<unsigned>(c->next_len()),
                            static_cast<uint64_t>(c->next_offset()));
      }
      io_uring_sqe_set_data(sqe, c);
      in_flight_chunks_.insert(c);
      in_flight_++;
      prepared++;
      if (single_submit_) {
        submit_or_fail();
        prepared = 0;
      }
      if (overlap_events_) reap(/*wait_for_one=*/false);
    }
    if (prepared > 0) submit_or_fail();
  }

  // io_uring_submit only fails for ring-level reasons (EBUSY with the CQ full is retried after reaping). The
  // prepared SQEs stay queued in the ring on EAGAIN/EBUSY, so retrying is safe.
  void submit_or_fail() {
    for (;;) {
      int rc = io_uring_submit(&ring_);
      if (rc >= 0) return;
      if (rc == -EINTR) continue;
      if ((rc == -EAGAIN || rc == -EBUSY) && in_flight_ > 0) {
        reap(true);
        continue;
      }
      throw RuntimeError(std::string("io_uring_submit failed: ") + std::strerror(-rc));
    }
  }

  // Handles every completion there is (waiting for one first if asked); returns how many.
  unsigned reap(bool wait_for_one) {
    io_uring_cqe* cqe = nullptr;
    if (wait_for_one) {
      int rc;
      do {
        rc = io_uring_wait_cqe(&ring_, &cqe);
      } while (rc == -EINTR);
      if (rc < 0) throw RuntimeError(std::string("io_uring_wait_cqe failed: ") + std::strerror(-rc));
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      seen++;
      auto* c = static_cast<Chunk*>(io_uring_cqe_get_data(cqe));
      in_flight_chunks_.erase(c);
      in_flight_--;
      if (on_transfer(*c, cqe->res)) {
        delete c;
      } else {
        pending_.emplace_front(c);  // the rest of a short transfer, next in line
      }
    }
    io_uring_cq_advance(&ring_, seen);
    return seen;
  }

  io_uring ring_{};
  int queue_depth_;
  bool single_submit_;
  bool overlap_events_;
  std::thread thread_;
  int wake_fd_ = -1;
  std::mutex mu_;
  bool stop_ = false;
  bool ring_open_ = true;
  std::string broken_;                           // guarded by mu_; set once the ring failed
  std::deque<std::unique_ptr<Chunk>> incoming_;  // guarded by mu_
  std::deque<std::unique_ptr<Chunk>> pending_;   // worker thread only
  int in_flight_ = 0;                            // worker thread only
  std::unordered_set<Chunk*> in_flight_chunks_;  // worker thread only
};

class UringIO : public ChunkedAsyncIO {
 public:
  explicit UringIO(const AioConfig& cfg) : ChunkedAsyncIO(cfg) {
    for (int i = 0; i < parallelism_; i++) {
      workers_.push_back(std::make_unique<UringWorker>(queue_depth_, single_submit_, overlap_events_));
    }
  }
  ~UringIO() override { workers_.clear(); }
  AioBackend backend() const override { return AioBackend::IoUring; }

 protected:
  void enqueue(std::vector<std::unique_ptr<Chunk>> chunks) override {
    for (auto& c : chunks) {
      size_t w = next_worker_.fetch_add(1, std::memory_order_relaxed) % workers_.size();
      workers_[w]->push(std::move(c));
    }
  }

 private:
  std::vector<std::unique_ptr<UringWorker>> workers_;
  std::atomic<size_t> next_worker_{0};
};

}  // namespace

std::unique_ptr<AsyncIO> make_uring_io(const AioConfig& cfg) { return std::make_unique<UringIO>(cfg); }

}  // namespace zt::offload::detail
