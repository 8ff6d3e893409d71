// Round trips through both AIO backends: random sizes (unaligned tails included) at random padded offsets, many
// requests in flight, every combination of single_submit / overlap_events, the forced thread-pool fallback and
// buffered (non-O_DIRECT) files.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/base/error.h"
#include "offload/async_io.h"
#include "tests/offload/offload_test_util.h"

namespace zt::offload {
namespace {

using testing::aligned_buffer;
using testing::AlignedBuffer;
using testing::ScratchDir;

struct Case {
  AioBackend backend;
  bool single_submit;
  bool overlap_events;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.backend == AioBackend::IoUring ? "uring" : "threads") +
         (info.param.single_submit ? "_single" : "_batched") + (info.param.overlap_events ? "_overlap" : "_serial");
}

class AioRoundTrip : public ::testing::TestWithParam<Case> {
 protected:
  AioConfig config(int64_t block_size, int queue_depth, int parallelism) const {
    AioConfig cfg;
    cfg.block_size = block_size;
    cfg.queue_depth = queue_depth;
    cfg.intra_op_parallelism = parallelism;
    cfg.single_submit = GetParam().single_submit;
    cfg.overlap_events = GetParam().overlap_events;
    return cfg;
  }
};

// Writes `sizes` objects at padded offsets in random order, all in flight together, reads them back into fresh
// buffers (again all in flight) and compares every byte.
void round_trip(AsyncIO& aio, const IoFile& file, const std::vector<size_t>& sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> offsets;
  int64_t at = 0;
  for (size_t s : sizes) {
    // A gap of 0..3 pages between objects: offsets are random but padded.
    at += static_cast<int64_t>(rng() % 4) * 4096;
    offsets.push_back(at);
    at += static_cast<int64_t>(io_padded_size(s));
  }
  std::vector<AlignedBuffer> out, in;
  std::vector<IoHandle> handles;
  for (size_t i = 0; i < sizes.size(); i++) {
    out.push_back(aligned_buffer(sizes[i]));
    for (size_t b = 0; b < sizes[i]; b++) out[i].get()[b] = static_cast<char>(rng());
  }
  std::vector<size_t> order(sizes.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i : order) handles.push_back(aio.write(file, out[i].get(), sizes[i], offsets[i]));
  // Half waited one by one, the rest by wait_all.
  for (size_t k = 0; k < handles.size() / 2; k++) aio.wait(handles[k]);
  aio.wait_all();
  EXPECT_EQ(aio.pending(), 0u);

  std::shuffle(order.begin(), order.end(), rng);
  handles.clear();
  for (size_t i = 0; i < sizes.size(); i++) {
    in.push_back(aligned_buffer(sizes[i] + 4096));
    std::memset(in[i].get(), 0x5a, io_padded_size(sizes[i] + 4096));
  }
  for (size_t i : order) handles.push_back(aio.read(file, in[i].get(), sizes[i], offsets[i]));
  for (IoHandle h : handles) aio.wait(h);
  for (size_t i = 0; i < sizes.size(); i++) {
    ASSERT_EQ(std::memcmp(out[i].get(), in[i].get(), sizes[i]), 0) << "object " << i << " of " << sizes[i] << " bytes";
    // Nothing past the requested bytes is touched in the caller's buffer (the tail went through the bounce).
    ASSERT_EQ(static_cast<unsigned char>(in[i].get()[sizes[i]]), 0x5a) << "object " << i;
  }
}

TEST_P(AioRoundTrip, RandomSizesWithUnalignedTails) {
  ScratchDir dir("roundtrip");
  auto aio = make_async_io(config(64 * 1024, 4, 2), GetParam().backend);
  EXPECT_EQ(aio->backend(), GetParam().backend);
  IoFile file(dir.path() + "/swap.bin");
  std::mt19937 rng(7);
  std::vector<size_t> sizes = {1, 511, 512, 4095, 4096, 4097, 65536, 65537, 200000, 1 << 20};
  for (int i = 0; i < 20; i++) sizes.push_back(1 + rng() % 300000);
  round_trip(*aio, file, sizes, 11);
}

TEST_P(AioRoundTrip, ManyConcurrentSmallRequests) {
  ScratchDir dir("many");
  auto aio = make_async_io(config(4096, 8, 2), GetParam().backend);
  IoFile file(dir.path() + "/swap.bin");
  std::mt19937 rng(3);
  std::vector<size_t> sizes;
  for (int i = 0; i < 300; i++) sizes.push_back(1 + rng() % 20000);
  round_trip(*aio, file, sizes, 5);
}

TEST_P(AioRoundTrip, BufferedFile) {
  ScratchDir dir("buffered");
  auto aio = make_async_io(config(8192, 4, 1), GetParam().backend);
  IoFile file(dir.path() + "/swap.bin", /*try_direct=*/false);
  EXPECT_FALSE(file.direct());
  round_trip(*aio, file, {1, 4095, 4097, 12345, 100000}, 9);
}

INSTANTIATE_TEST_SUITE_P(Backends, AioRoundTrip,
                         ::testing::Values(Case{AioBackend::IoUring, false, true},
                                           Case{AioBackend::IoUring, true, true},
                                           Case{AioBackend::IoUring, false, false},
                                           Case{AioBackend::IoUring, true, false},
                                           Case{AioBackend::Threads, false, true}),
                         case_name);

TEST(AioFile, DirectWheneverTheFilesystemTakesIt) {
  ScratchDir dir("direct");
  std::string probe = dir.path() + "/probe.bin";
  int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  if (fd < 0) GTEST_SKIP() << "the build directory's filesystem refuses O_DIRECT (" << std::strerror(errno) << ")";
  ::close(fd);
  IoFile file(dir.path() + "/swap.bin");
  EXPECT_TRUE(file.direct());
  IoFile buffered(dir.path() + "/buffered.bin", /*try_direct=*/false);
  EXPECT_FALSE(buffered.direct());
}

TEST(AioFile, RemovedAtDestructionAndClose) {
  ScratchDir dir("remove");
  std::string path;
  {
    IoFile file = IoFile::create_in(dir.path(), "t");
    path = file.path();
    EXPECT_TRUE(std::filesystem::exists(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  IoFile file = IoFile::create_in(dir.path(), "t");
  path = file.path();
  remove_live_swap_files();  // what atexit does
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(AioFallback, EnvForcesThreadPool) {
  ::setenv("ZT_AIO_BACKEND", "threads", 1);
  auto aio = make_async_io(AioConfig{});
  ::unsetenv("ZT_AIO_BACKEND");
  EXPECT_EQ(aio->backend(), AioBackend::Threads);
  ScratchDir dir("fallback");
  IoFile file(dir.path() + "/swap.bin");
  round_trip(*aio, file, {3, 4096, 70000, 1 << 20}, 1);

  ::setenv("ZT_AIO_BACKEND", "bogus", 1);
  EXPECT_THROW(make_async_io(AioConfig{}), ConfigError);
  ::unsetenv("ZT_AIO_BACKEND");
  EXPECT_EQ(make_async_io(AioConfig{})->backend(), AioBackend::IoUring);
}

TEST(AioFallback, RingSetupFailureFallsBackToThreads) {
  // More entries than io_uring allows (32768) make io_uring_queue_init fail with EINVAL: the same path as a
  // container that refuses io_uring.
  AioConfig cfg;
  cfg.queue_depth = 100000;
  EXPECT_THROW(make_async_io(cfg, AioBackend::IoUring), RuntimeError);
  auto aio = make_async_io(cfg);
  EXPECT_EQ(aio->backend(), AioBackend::Threads);
  ScratchDir dir("setup_fail");
  IoFile file(dir.path() + "/swap.bin");
  round_trip(*aio, file, {5, 8192, 100001}, 4);
  ::setenv("ZT_AIO_BACKEND", "io_uring", 1);
  EXPECT_THROW(make_async_io(cfg), RuntimeError);  // asked for io_uring explicitly: no silent fallback
  ::unsetenv("ZT_AIO_BACKEND");
}

TEST(AioFallback, TmpfsRoundTrip) {
  // tmpfs: O_DIRECT is refused on kernels before 6.6 (the buffered fallback) and taken since; both must work.
  testing::TmpfsMount fs("tmpfs_rt", "64M");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  IoFile file(fs.path() + "/swap.bin");
  auto aio = make_async_io(AioConfig{});
  round_trip(*aio, file, {1, 4097, 300000}, 2);
  file.close();
}

TEST(AioErrors, UnalignedBufferOrOffsetIsRefused) {
  ScratchDir dir("unaligned");
  IoFile file(dir.path() + "/swap.bin");
  auto aio = make_async_io(AioConfig{});
  auto buf = aligned_buffer(8192);
  EXPECT_THROW(aio->write(file, buf.get() + 1, 100, 0), RuntimeError);
  EXPECT_THROW(aio->write(file, buf.get(), 100, 100), RuntimeError);
  EXPECT_THROW(aio->wait(12345), RuntimeError);
}

TEST(AioErrors, ShortReadPastEndOfFile) {
  for (AioBackend backend : {AioBackend::IoUring, AioBackend::Threads}) {
    ScratchDir dir("short");
    IoFile file(dir.path() + "/swap.bin");
    auto aio = make_async_io(AioConfig{}, backend);
    auto buf = aligned_buffer(16384);
    std::memset(buf.get(), 1, 16384);
    aio->wait(aio->write(file, buf.get(), 4096, 0));
    IoHandle h = aio->read(file, buf.get(), 16384, 0);
    try {
      aio->wait(h);
      FAIL() << "reading past the end of the file must fail";
    } catch (const RuntimeError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(file.path()), std::string::npos) << what;
      EXPECT_NE(what.find("read of 16384 bytes at offset 0"), std::string::npos) << what;
      EXPECT_NE(what.find("end of file"), std::string::npos) << what;
    }
    EXPECT_EQ(aio->pending(), 0u);
  }
}

}  // namespace
}  // namespace zt::offload
