#pragma once
// Asynchronous reads and writes of swap files, c10d-style: submit returns a handle, wait(handle) blocks until that
// request is done and throws if it failed. Two backends: io_uring and a pread/pwrite thread pool.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/config/config.h"
#include "offload/io_file.h"

namespace zt::offload {

using IoHandle = uint64_t;

enum class AioBackend { IoUring, Threads };

class AsyncIO {
 public:
  virtual ~AsyncIO() = default;
  // Rules for both: `buf` and `offset` must be multiples of kIoAlignment (RuntimeError otherwise); `bytes` may be
  // anything. An unaligned tail goes through a 4096-byte bounce buffer: a write then writes the whole padded block
  // [offset, offset + io_padded_size(bytes)) (zeros after the data), a read reads up to that block and copies out
  // only `bytes`. So lay objects out at padded offsets. `buf` must stay valid until the handle is waited on.
  // Before every submit the file is checked for deletion (IoFile::check_not_deleted).
  virtual IoHandle read(const IoFile& file, void* buf, size_t bytes, int64_t offset) = 0;
  virtual IoHandle write(const IoFile& file, const void* buf, size_t bytes, int64_t offset) = 0;
  // Blocks until the request is complete; throws RuntimeError (file, operation, offset, size, errno text) if any
  // part failed. Each handle is waited on once; an unknown or already-waited handle throws.
  virtual void wait(IoHandle handle) = 0;
  // Waits for every outstanding request, then throws the first failure (if any). Nothing is left outstanding.
  virtual void wait_all() = 0;
  virtual size_t pending() const = 0;
  virtual AioBackend backend() const = 0;
  const char* backend_name() const { return backend() == AioBackend::IoUring ? "io_uring" : "threads"; }
};

// The io_uring backend unless ZT_AIO_BACKEND=threads, or io_uring_queue_init fails (then one notice is logged and
// the thread pool takes over). ZT_AIO_BACKEND=io_uring makes a failing io_uring an error instead.
// Config keys: block_size (request split size, rounded down to a multiple of 4096, clamped to [4 KiB, 1 GiB]),
// queue_depth (transfers in flight per ring; the thread pool has intra_op_parallelism x queue_depth threads, at
// most 64), intra_op_parallelism (rings, each with its own thread), single_submit, overlap_events.
std::unique_ptr<AsyncIO> make_async_io(const AioConfig& cfg);
// A specific backend; IoUring throws RuntimeError when io_uring cannot be set up.
std::unique_ptr<AsyncIO> make_async_io(const AioConfig& cfg, AioBackend backend);

}  // namespace zt::offload
