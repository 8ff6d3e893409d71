// Fault injection: a full disk (RLIMIT_FSIZE in a child, and a 1 MiB tmpfs), a read-only directory (a tmpfs
// remounted read-only: root ignores permission bits), a missing nvme_path, and a swap file deleted mid-run. Each
// must end in a RuntimeError naming the file and the operation, and nothing may hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "engine/base/error.h"
#include "offload/async_io.h"
#include "tests/offload/offload_test_util.h"

namespace zt::offload {
namespace {

using testing::aligned_buffer;
using testing::ScratchDir;
using testing::TmpfsMount;

// Writes `bytes` in one request and returns the error text ("" when it succeeded).
std::string write_error(AsyncIO& aio, const IoFile& file, size_t bytes) {
  auto buf = aligned_buffer(bytes);
  std::memset(buf.get(), 7, bytes);
  try {
    aio.wait(aio.write(file, buf.get(), bytes, 0));
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "";
}

// Runs `body` in a forked child with a 20 s alarm (a hang fails the test); returns its exit status.
int in_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    int rc = 99;
    try {
      rc = body();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return 200 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

class AioFaults : public ::testing::TestWithParam<AioBackend> {};

std::string backend_name(const ::testing::TestParamInfo<AioBackend>& info) {
  return info.param == AioBackend::IoUring ? "uring" : "threads";
}

TEST_P(AioFaults, FileSizeLimitGivesNamedError) {
  ScratchDir dir("fsize");
  AioBackend backend = GetParam();
  std::string path = dir.path() + "/swap.bin";
  int rc = in_child([&] {
    // SIGXFSZ ignored: the write returns EFBIG instead of killing the process.
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{1 << 20, 1 << 20};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 10;
    AioConfig cfg;
    cfg.block_size = 256 * 1024;
    auto aio = make_async_io(cfg, backend);
    IoFile file(path);
    std::string err = write_error(*aio, file, 4 << 20);
    std::fprintf(stderr, "child error: %s\n", err.c_str());
    if (err.empty()) return 3;
    if (err.find(path) == std::string::npos || err.find("write of 4194304 bytes at offset 0") == std::string::npos)
      return 4;
    if (err.find(std::strerror(EFBIG)) == std::string::npos) return 5;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "3: no error, 4: message lacks file/op/offset/size, 5: not EFBIG, 2xx: killed by signal";
}

TEST_P(AioFaults, FullDiskGivesNamedError) {
  TmpfsMount fs("enospc", "1M");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?): the RLIMIT_FSIZE test covers it";
  AioConfig cfg;
  cfg.block_size = 256 * 1024;
  auto aio = make_async_io(cfg, GetParam());
  IoFile file(fs.path() + "/swap.bin");
  std::string err = write_error(*aio, file, 4 << 20);
  EXPECT_NE(err.find(file.path()), std::string::npos) << err;
  EXPECT_NE(err.find("write of 4194304 bytes at offset 0"), std::string::npos) << err;
  EXPECT_NE(err.find(std::strerror(ENOSPC)), std::string::npos) << err;
  EXPECT_EQ(aio->pending(), 0u);
  file.close();
}

TEST_P(AioFaults, DeletedSwapFileIsDetected) {
  ScratchDir dir("deleted");
  auto aio = make_async_io(AioConfig{}, GetParam());
  IoFile file(dir.path() + "/swap.bin");
  auto buf = aligned_buffer(8192);
  aio->wait(aio->write(file, buf.get(), 8192, 0));
  ASSERT_EQ(::unlink(file.path().c_str()), 0);
  for (bool read : {true, false}) {
    try {
      if (read) {
        aio->read(file, buf.get(), 8192, 0);
      } else {
        aio->write(file, buf.get(), 8192, 0);
      }
      FAIL() << "an I/O on a deleted swap file must fail";
    } catch (const RuntimeError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(file.path()), std::string::npos) << what;
      EXPECT_NE(what.find("deleted"), std::string::npos) << what;
      EXPECT_NE(what.find(read ? "aio read" : "aio write"), std::string::npos) << what;
    }
  }
  aio->wait_all();
}

INSTANTIATE_TEST_SUITE_P(Backends, AioFaults, ::testing::Values(AioBackend::IoUring, AioBackend::Threads),
                         backend_name);

TEST(AioFaults, MissingNvmePath) {
  try {
    IoFile::create_in("/nonexistent_zt_dir/nvme", "opt");
    FAIL() << "a missing nvme_path must fail";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent_zt_dir/nvme does not exist"), std::string::npos) << e.what();
  }
  try {
    IoFile file("/nonexistent_zt_dir/swap.bin");
    FAIL() << "a missing directory must fail";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("directory /nonexistent_zt_dir does not exist"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(IoFile::create_in("", "opt"), RuntimeError);
}

TEST(AioFaults, ReadOnlyDirectory) {
  TmpfsMount fs("readonly", "1M");
  if (!fs.mounted() || !fs.remount_read_only()) {
    GTEST_SKIP() << "cannot mount and remount a tmpfs read-only here (not root?)";
  }
  try {
    IoFile file = IoFile::create_in(fs.path(), "opt");
    FAIL() << "creating a swap file in a read-only directory must fail";
  } catch (const RuntimeError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(fs.path()), std::string::npos) << what;
    EXPECT_NE(what.find("read-only"), std::string::npos) << what;
  }
}

TEST(AioFaults, DestructionWithRequestsInFlightDoesNotHang) {
  ScratchDir dir("inflight");
  auto start = std::chrono::steady_clock::now();
  for (AioBackend backend : {AioBackend::IoUring, AioBackend::Threads}) {
    IoFile file(dir.path() + "/swap.bin");
    auto buf = aligned_buffer(1 << 20);
    auto aio = make_async_io(AioConfig{}, backend);
    for (int i = 0; i < 16; i++) aio->write(file, buf.get(), 1 << 20, int64_t{i} << 20);
    aio.reset();  // drains: the writes finish before the buffers may go
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
}  // namespace zt::offload
