#pragma once
// Internal to offload/: how both AIO backends cut a request into chunks and account for their completion.
#include <sys/types.h>

#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "offload/async_io.h"

namespace zt::offload::detail {

enum class IoOp { Read, Write };

// One user request: done when every chunk has finished; the first chunk error is kept.
struct Request {
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  std::string error;
};

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

// One transfer of at most block_size bytes. A chunk that a backend got back short is resubmitted for the rest
// (buf + done, len - done, offset + done) until `need` bytes have moved, an error, or end of file.
struct Chunk {
  std::shared_ptr<Request> request;
  IoOp op = IoOp::Read;
  int fd = -1;
  std::string path;
  char* buf = nullptr;
  size_t len = 0;
  int64_t offset = 0;
  size_t done = 0;
  size_t need = 0;  // bytes that must arrive: len, except a tail read through the bounce buffer
  // The unaligned tail of an O_DIRECT read lands in `bounce`; its first copy_bytes go to copy_to when done.
  std::unique_ptr<char, FreeDeleter> bounce;
  char* copy_to = nullptr;
  size_t copy_bytes = 0;
  // The whole request, for the error message.
  int64_t request_offset = 0;
  size_t request_bytes = 0;

  char* next_buf() const { return buf + done; }
  size_t next_len() const { return len - done; }
  int64_t next_offset() const { return offset + static_cast<int64_t>(done); }
};

// Accounts a transfer result (bytes, or -errno) to the chunk. Returns true when the chunk is finished (its request
// was told, success or failure); false when the rest must be submitted again (short transfer or EINTR/EAGAIN).
bool on_transfer(Chunk& chunk, ssize_t result);
// Finishes a chunk with an error (a ring that broke, a backend shutting down).
void fail_chunk(Chunk& chunk, const std::string& why);

// The request bookkeeping and the chunking shared by both backends; a backend implements enqueue().
class ChunkedAsyncIO : public AsyncIO {
 public:
  IoHandle read(const IoFile& file, void* buf, size_t bytes, int64_t offset) override;
  IoHandle write(const IoFile& file, const void* buf, size_t bytes, int64_t offset) override;
  void wait(IoHandle handle) override;
  void wait_all() override;
  size_t pending() const override;

 protected:
  explicit ChunkedAsyncIO(const AioConfig& cfg);
  // Takes the chunks of one request; each must eventually be finished through on_transfer or fail_chunk.
  virtual void enqueue(std::vector<std::unique_ptr<Chunk>> chunks) = 0;
  size_t block_size_;
  int queue_depth_;
  int parallelism_;
  bool single_submit_;
  bool overlap_events_;

 private:
  IoHandle submit(IoOp op, const IoFile& file, char* buf, size_t bytes, int64_t offset);
  mutable std::mutex mu_;
  std::unordered_map<IoHandle, std::shared_ptr<Request>> requests_;
  IoHandle next_handle_ = 1;
};

std::unique_ptr<AsyncIO> make_uring_io(const AioConfig& cfg);   // throws RuntimeError if io_uring is unusable
std::unique_ptr<AsyncIO> make_thread_io(const AioConfig& cfg);

}  // namespace zt::offload::detail
