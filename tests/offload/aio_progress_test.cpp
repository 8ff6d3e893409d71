// A request never waits behind another one still in flight. A read of a FIFO stays blocked until the test writes
// to it; a later read of a regular file must complete meanwhile. (The io_uring worker sleeps on an eventfd that new
// requests signal; sleeping in io_uring_wait_cqe would keep the new request queued until the FIFO read ends.) A
// watchdog bounds the wait, so the failure is reported rather than a hang.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <future>

#include "offload/async_io.h"
#include "tests/offload/offload_test_util.h"

namespace zt::offload {
namespace {

using testing::aligned_buffer;
using testing::ScratchDir;

// io_uring only: pread on a FIFO is ESPIPE, so the thread pool cannot be tested this way (with queue_depth
// threads it has no head-of-line wait to begin with).
TEST(AioProgress, NewRequestCompletesWhileAnotherIsBlocked) {
  ScratchDir dir("progress");
  AioConfig cfg;
  cfg.block_size = 4096;
  cfg.queue_depth = 4;
  cfg.intra_op_parallelism = 1;
  auto aio = make_async_io(cfg, AioBackend::IoUring);
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  IoFile pipe(fifo, /*try_direct=*/false, /*remove_on_close=*/false);  // O_RDWR: opens with no writer yet
  IoFile file(dir.path() + "/swap.bin");
  auto data = aligned_buffer(4096);
  std::memset(data.get(), 7, 4096);
  aio->wait(aio->write(file, data.get(), 4096, 0));

  auto blocked_buf = aligned_buffer(4096);
  const IoHandle blocked = aio->read(pipe, blocked_buf.get(), 4096, 0);
  auto in = aligned_buffer(4096);
  const IoHandle quick = aio->read(file, in.get(), 4096, 0);
  auto done = std::async(std::launch::async, [&] { aio->wait(quick); });
  const bool completed = done.wait_for(std::chrono::seconds(20)) == std::future_status::ready;

  // Unblock the FIFO read in any case, so that both requests end.
  const int writer = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(::write(writer, data.get(), 4096), 4096);
  ::close(writer);
  done.get();
  aio->wait(blocked);
  EXPECT_TRUE(completed) << "the file read waited for the blocked FIFO read";
  EXPECT_EQ(std::memcmp(in.get(), data.get(), 4096), 0);
  EXPECT_EQ(std::memcmp(blocked_buf.get(), data.get(), 4096), 0);
}

}  // namespace
}  // namespace zt::offload
