// The pread/pwrite AIO backend: a pool of intra_op_parallelism x queue_depth threads (capped at 64) sharing one
// queue of chunks, so as many transfers are in flight as with io_uring. For containers where io_uring is refused.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <thread>

#include "offload/aio_chunks.h"

namespace zt::offload::detail {
namespace {

class ThreadIO : public ChunkedAsyncIO {
 public:
  explicit ThreadIO(const AioConfig& cfg) : ChunkedAsyncIO(cfg) {
    int threads = std::min(64, parallelism_ * queue_depth_);
    for (int i = 0; i < threads; i++) threads_.emplace_back([this] { run(); });
  }

  ~ThreadIO() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  AioBackend backend() const override { return AioBackend::Threads; }

 protected:
  void enqueue(std::vector<std::unique_ptr<Chunk>> chunks) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : chunks) queue_.push_back(std::move(c));
    }
    cv_.notify_all();
  }

 private:
  // Drains the queue before stopping: every chunk is finished, so every wait() returns.
  void run() {
    for (;;) {
      std::unique_ptr<Chunk> c;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        c = std::move(queue_.front());
        queue_.pop_front();
      }
      for (;;) {
        ssize_t n = c->op == IoOp::Read ? ::pread(c->fd, c->next_buf(), c->next_len(), c->next_offset())
                                        : ::pwrite(c->fd, c->next_buf(), c->next_len(), c->next_offset());
        if (on_transfer(*c, n < 0 ? -errno : n)) break;
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Chunk>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<AsyncIO> make_thread_io(const AioConfig& cfg) { return std::make_unique<ThreadIO>(cfg); }

}  // namespace zt::offload::detail
