// The offloaded step's order of work (engine/zero/cuda/offload_chunk_pipeline.h) against a fake device whose memory
// is a host vector and whose copy stream runs queued copies in order only when the pipeline waits (or at seeded
// random moments), so an update before its download has landed sees poisoned values and a missing copy shows as an
// element copied zero or two times. Runs on the CPU. The HostOffloadOptimizer test at the end needs a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/zero/cuda/host_memory_check.h"
#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/cuda/offload_chunk_pipeline.h"
#include "../zero/nvme_test_config.h"
#include "gpu_test_util.h"

namespace zt {
namespace {

const float kPoison = std::numeric_limits<float>::quiet_NaN();

// device: the fake device partition; host.grads / host.master: the host buffers the copies move between.
class FakeCopier : public ChunkCopier {
 public:
  FakeCopier(std::vector<float>& device, const HostAdamPartition& host, uint32_t progress_seed)
      : device_(device), host_(host), rng_(progress_seed),
        downloads_(device.size(), 0), uploads_(device.size(), 0) {}

  void queue_download(size_t chunk, size_t begin, size_t end) override {
    EXPECT_FALSE(finished_) << "download queued after finish";
    EXPECT_EQ(chunk, downloads_queued_) << "downloads are queued in chunk order";
    ++downloads_queued_;
    stream_.push_back({true, chunk, begin, end});
    maybe_progress();
  }
  void wait_download(size_t chunk) override {
    ASSERT_LT(chunk, downloads_queued_) << "waited for a download never queued";
    while (downloads_done_ <= chunk) run_one();
  }
  void queue_upload(size_t chunk, size_t begin, size_t end) override {
    EXPECT_FALSE(finished_) << "upload queued after finish";
    EXPECT_EQ(chunk, uploads_queued_) << "uploads are queued in chunk order";
    ++uploads_queued_;
    stream_.push_back({false, chunk, begin, end});
    maybe_progress();
  }
  void finish() override {
    EXPECT_FALSE(finished_) << "finish called twice";
    finished_ = true;
  }

  // The device's later work waits for the stream: run what is left.
  void drain() {
    while (!stream_.empty()) run_one();
  }
  void reset_step() {
    finished_ = false;
    downloads_queued_ = uploads_queued_ = downloads_done_ = 0;
    std::fill(downloads_.begin(), downloads_.end(), 0);
    std::fill(uploads_.begin(), uploads_.end(), 0);
  }

  size_t downloads_queued() const { return downloads_queued_; }
  size_t uploads_queued() const { return uploads_queued_; }
  bool finished() const { return finished_; }
  const std::vector<int>& downloads() const { return downloads_; }
  const std::vector<int>& uploads() const { return uploads_; }

 private:
  struct Copy {
    bool download;
    size_t chunk, begin, end;
  };

  void run_one() {
    ASSERT_FALSE(stream_.empty());
    const Copy c = stream_.front();
    stream_.erase(stream_.begin());
    for (size_t i = c.begin; i < c.end; ++i) {
      if (c.download) {
        host_.grads[i] = device_[i];
        ++downloads_[i];
      } else {
        device_[i] = host_.master[i];
        ++uploads_[i];
      }
    }
    if (c.download) ++downloads_done_;
  }
  // A real stream progresses on its own; here sometimes one or two queued copies run at once.
  void maybe_progress() {
    for (int k = static_cast<int>(rng_() % 3); k > 0 && !stream_.empty(); --k) run_one();
  }

  std::vector<float>& device_;
  const HostAdamPartition& host_;
  std::mt19937 rng_;
  std::vector<Copy> stream_;
  std::vector<int> downloads_, uploads_;
  size_t downloads_queued_ = 0, uploads_queued_ = 0, downloads_done_ = 0;
  bool finished_ = false;
};

struct HostBuffers {
  std::vector<float> master, grads, exp_avg, exp_avg_sq;
  HostAdamPartition part;
  explicit HostBuffers(size_t n, std::vector<DecayRange> ranges = {})
      : master(n, 0.0f), grads(n, kPoison), exp_avg(n, 0.0f), exp_avg_sq(n, 0.0f) {
    part = {master.data(), grads.data(), exp_avg.data(), exp_avg_sq.data(), n, std::move(ranges)};
  }
};

TEST(OffloadChunkPipeline, EveryElementOnceInOrderWithTheNextDownloadsInFlight) {
  for (size_t n : {1, 7, 1000, 1024}) {
    for (size_t chunk : {1, 3, 256, 1000, 5000}) {
      for (size_t lookahead : {1, 2, 5, 1 << 20}) {
        for (uint32_t seed : {1u, 2u}) {
          SCOPED_TRACE("n " + std::to_string(n) + " chunk " + std::to_string(chunk) + " lookahead " +
                       std::to_string(lookahead) + " seed " + std::to_string(seed));
          HostBuffers host(n);
          std::vector<float> device(n);
          for (size_t i = 0; i < n; ++i) device[i] = static_cast<float>(i) + 0.5f;  // the gradient
          FakeCopier copier(device, host.part, seed);
          const ChunkSplit split{n, chunk};
          std::vector<int> updates(n, 0);
          size_t next = 0;
          run_chunk_pipeline(split, lookahead, copier, [&](size_t begin, size_t end) {
            const size_t k = begin / chunk;
            EXPECT_EQ(begin, next) << "chunks are updated in order, each once";
            EXPECT_EQ(end, std::min(n, begin + chunk));
            next = end;
            // The downloads of the following chunks are on the stream while the CPU works on this one.
            EXPECT_EQ(copier.downloads_queued(), std::min(split.count(), k + 1 + lookahead));
            EXPECT_EQ(copier.uploads_queued(), k) << "a chunk's upload is queued only after its update";
            for (size_t i = begin; i < end; ++i) {
              ASSERT_EQ(host.grads[i], device[i]) << "updated before its download landed, at " << i;
              ++updates[i];
              host.master[i] = 2.0f * host.grads[i];  // the "update"
            }
          });
          EXPECT_EQ(next, n);
          EXPECT_TRUE(copier.finished());
          EXPECT_EQ(copier.uploads_queued(), split.count());
          copier.drain();
          for (size_t i = 0; i < n; ++i) {
            ASSERT_EQ(updates[i], 1) << i;
            ASSERT_EQ(copier.downloads()[i], 1) << i;
            ASSERT_EQ(copier.uploads()[i], 1) << i;
            ASSERT_EQ(device[i], 2.0f * (static_cast<float>(i) + 0.5f)) << "the updated weight is on the device, " << i;
          }
        }
      }
    }
  }
}

TEST(OffloadChunkPipeline, EmptyPartitionOnlyFinishes) {
  HostBuffers host(0);
  std::vector<float> device;
  FakeCopier copier(device, host.part, 1);
  run_chunk_pipeline({0, 16}, 2, copier, [](size_t, size_t) { ADD_FAILURE() << "no chunk to update"; });
  EXPECT_TRUE(copier.finished());
  EXPECT_EQ(copier.downloads_queued(), 0u);
}

TEST(OffloadChunkPipeline, RejectsZeroChunkAndZeroLookahead) {
  HostBuffers host(4);
  std::vector<float> device(4);
  FakeCopier copier(device, host.part, 1);
  auto noop = [](size_t, size_t) {};
  try {
    run_chunk_pipeline({4, 0}, 2, copier, noop);
    ADD_FAILURE() << "chunk 0 must throw";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("chunk size"), std::string::npos) << e.what();
  }
  try {
    run_chunk_pipeline({4, 2}, 0, copier, noop);
    ADD_FAILURE() << "lookahead 0 must throw";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("lookahead"), std::string::npos) << e.what();
  }
}

TEST(OffloadChunkPipeline, RangesInChunkClipAndShift) {
  const std::vector<DecayRange> ranges = {{0, 10, true}, {10, 12, false}, {20, 30, true}};
  auto same = [](const std::vector<DecayRange>& a, const std::vector<DecayRange>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].begin != b[i].begin || a[i].end != b[i].end || a[i].decay != b[i].decay) return false;
    return true;
  };
  EXPECT_TRUE(same(ranges_in_chunk(ranges, 0, 30), ranges));
  EXPECT_TRUE(same(ranges_in_chunk(ranges, 5, 25), {{0, 5, true}, {5, 7, false}, {15, 20, true}}));
  EXPECT_TRUE(same(ranges_in_chunk(ranges, 12, 20), {}));  // a gap: no range, so no decay
  EXPECT_TRUE(same(ranges_in_chunk(ranges, 25, 40), {{0, 5, true}}));
}

// The chunked CPU Adam through the pipeline is bitwise the CPU path's one cpu_adam_step over the whole partition
// (offload_optimizer.device = cpu on the CPU), over 3 steps, with decay ranges, gaps and chunks that cut ranges.
TEST(OffloadChunkPipeline, ChunkedCpuAdamIsBitwiseTheWholePartitionStep) {
  const size_t n = 70001;
  const std::vector<DecayRange> ranges = {{0, 30000, true}, {30000, 30500, false}, {31000, 65000, true}};
  offload::CpuAdamHyper hyper;
  hyper.lr = 3e-3;
  hyper.beta2 = 0.95;
  hyper.weight_decay = 0.1;
  const std::vector<float> init = cuda::test::random_floats(n, 5, 0.1f);
  for (bool adamw : {true, false}) {
    for (size_t chunk : {size_t{1000}, size_t{4097}, size_t{65536}, n}) {
      SCOPED_TRACE(std::string(adamw ? "AdamW" : "Adam (L2)") + " chunk " + std::to_string(chunk));
      hyper.adamw_mode = adamw;
      std::vector<float> ref = init, ref_m(n, 0.0f), ref_v(n, 0.0f);
      HostBuffers host(n, ranges);
      host.master = init;
      host.part.master = host.master.data();
      std::vector<float> device(n);
      FakeCopier copier(device, host.part, 7);
      for (int64_t step = 1; step <= 3; ++step) {
        const std::vector<float> grads = cuda::test::random_floats(n, 100 + static_cast<uint32_t>(step));
        offload::cpu_adam_step(ref.data(), grads.data(), ref_m.data(), ref_v.data(), n, hyper, step, ranges);
        device = grads;
        copier.reset_step();
        run_chunk_pipeline({n, chunk}, 2, copier,
                           [&](size_t begin, size_t end) { host.part.update(begin, end, hyper, step); });
        copier.drain();
      }
      ASSERT_EQ(std::memcmp(host.master.data(), ref.data(), n * sizeof(float)), 0);
      ASSERT_EQ(std::memcmp(host.exp_avg.data(), ref_m.data(), n * sizeof(float)), 0);
      ASSERT_EQ(std::memcmp(host.exp_avg_sq.data(), ref_v.data(), n * sizeof(float)), 0);
      ASSERT_EQ(std::memcmp(device.data(), ref.data(), n * sizeof(float)), 0) << "the device holds the update";
    }
  }
}

using test::nvme_config;

class NvmeChunkPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs each test in a process of its own, several at once: a directory per test and process, so that one
    // test's TearDown does not remove another's swap files.
    dir_ = std::string(ZT_BINARY_DIR) + "/nvme_chunk_pipeline_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_ + "/gpu");
    std::filesystem::create_directories(dir_ + "/cpu");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// offload_optimizer.device nvme on the GPU: the gradient chunks come down while NvmeOptimizerState streams the
// swap files' sub-groups; the device ends up with bitwise the CPU path's NVMe update (the same class stepping over
// the whole gradient in host memory), every element downloaded and uploaded once per step, and a sub-group updated
// before its download landed would read the poisoned host gradient (NaN) and fail the comparison.
TEST_F(NvmeChunkPipeline, DeviceGetsTheCpuPathsNvmeUpdateBitwise) {
  const size_t group = 1024, n = group * 6 + 77;  // an odd last sub-group
  const std::vector<DecayRange> ranges = {{0, 3000, true}, {3000, 3100, false}, {3500, n, true}};
  offload::CpuAdamHyper hyper;
  hyper.lr = 2e-3;
  hyper.weight_decay = 0.1;
  const std::vector<float> init = cuda::test::random_floats(n, 11, 0.1f);
  for (int buffers : {2, 3, 5}) {
    for (size_t lookahead : {size_t{1}, size_t{2}, size_t{8}}) {
      SCOPED_TRACE("buffer_count " + std::to_string(buffers) + " lookahead " + std::to_string(lookahead));
      NvmeOptimizerState gpu_side(nvme_config(dir_ + "/gpu", buffers, group), n, 0, init.data());
      NvmeOptimizerState cpu_side(nvme_config(dir_ + "/cpu", buffers, group), n, 0, init.data());
      std::vector<float> host_grads(n), device(n), ref(n), seen(n, 0.0f);
      // Uploads leave from the host gradient buffer, where each updated sub-group's weights are put.
      HostAdamPartition host;
      host.n = n;
      host.grads = host.master = host_grads.data();
      FakeCopier copier(device, host, 13 + static_cast<uint32_t>(buffers));
      for (int64_t step = 1; step <= 3; ++step) {
        const std::vector<float> grads = cuda::test::random_floats(n, 300 + static_cast<uint32_t>(step));
        cpu_side.step(grads.data(), ranges, hyper, step,
                      [&](size_t b, size_t len, const float* m) { std::memcpy(ref.data() + b, m, len * 4); });
        device = grads;
        std::fill(host_grads.begin(), host_grads.end(), kPoison);
        copier.reset_step();
        size_t next = 0;
        run_nvme_chunk_pipeline(gpu_side, lookahead, copier, host_grads.data(), ranges, hyper, step,
                                [&](size_t b, size_t len, const float* m) {
                                  EXPECT_EQ(b, next) << "sub-groups reach the sink in order";
                                  next = b + len;
                                  std::memcpy(seen.data() + b, m, len * 4);
                                });
        EXPECT_EQ(next, n);
        EXPECT_TRUE(copier.finished());
        copier.drain();
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(copier.downloads()[i], 1) << "element " << i;
          ASSERT_EQ(copier.uploads()[i], 1) << "element " << i;
        }
        ASSERT_EQ(std::memcmp(device.data(), ref.data(), n * sizeof(float)), 0) << "step " << step;
        ASSERT_EQ(std::memcmp(seen.data(), ref.data(), n * sizeof(float)), 0) << "step " << step;
      }
      std::vector<float> m_gpu(n), m_cpu(n);
      gpu_side.read_state("exp_avg_sq", m_gpu.data());
      cpu_side.read_state("exp_avg_sq", m_cpu.data());
      EXPECT_EQ(std::memcmp(m_gpu.data(), m_cpu.data(), n * sizeof(float)), 0);
    }
  }
}

// A swap file deleted under the run stops the step with the CPU path's error naming the file.
TEST_F(NvmeChunkPipeline, DeletedSwapFileIsANamedError) {
  const size_t n = 5000;
  const std::vector<float> init = cuda::test::random_floats(n, 3, 0.1f);
  NvmeOptimizerState state(nvme_config(dir_ + "/gpu", 2, 1024), n, 0, init.data());
  const std::string path = state.path("exp_avg");
  std::filesystem::remove(path);
  std::vector<float> host_grads(n), device = cuda::test::random_floats(n, 4);
  HostAdamPartition host;
  host.n = n;
  host.grads = host.master = host_grads.data();
  FakeCopier copier(device, host, 1);
  try {
    run_nvme_chunk_pipeline(state, 2, copier, host_grads.data(), {{0, n, true}}, offload::CpuAdamHyper{}, 1);
    ADD_FAILURE() << "a deleted swap file must stop the step";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find(path + " was deleted while in use"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run_nvme_chunk_pipeline(state, 0, copier, host_grads.data(), {}, offload::CpuAdamHyper{}, 1),
               RuntimeError);
}

TEST(OffloadChunkPipeline, HostPartitionNamesItsStateAndRejectsTheRest) {
  HostBuffers host(8);
  EXPECT_EQ(host.part.state("master"), host.master.data());
  EXPECT_EQ(host.part.state("exp_avg"), host.exp_avg.data());
  EXPECT_EQ(host.part.state("exp_avg_sq"), host.exp_avg_sq.data());
  try {
    host.part.state("momentum_buffer");
    ADD_FAILURE() << "an unknown state name must throw";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("'momentum_buffer'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(host.part.update(4, 9, offload::CpuAdamHyper{}, 1), RuntimeError);
}

// The host-memory check before the offload's allocations: MemAvailable read from a meminfo file, a request above it
// refused with both sizes and the key, an unreadable file or a request that fits passing.
TEST(HostMemoryCheck, RefusesWhatTheHostCannotGiveNamingTheSizes) {
  const std::string path = std::string(ZT_BINARY_DIR) + "/host_memory_check_meminfo";
  {
    std::ofstream f(path);
    f << "MemTotal:       131072000 kB\nMemFree:         1000 kB\nMemAvailable:   10485760 kB\n";
  }
  EXPECT_EQ(host_memory_available(path), int64_t{10485760} * 1024);
  EXPECT_EQ(host_memory_available(path + "_missing"), 0);
  std::filesystem::remove(path);
  EXPECT_NO_THROW(check_host_memory(size_t{5} << 30, "x", int64_t{10} << 30));
  EXPECT_NO_THROW(check_host_memory(size_t{50} << 30, "x", 0));  // unknown: not checked
  try {
    check_host_memory(size_t{48} << 30, "zero_optimization.offload_optimizer.device cpu", int64_t{10} << 30);
    ADD_FAILURE() << "a request above MemAvailable must throw";
  } catch (const RuntimeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("zero_optimization.offload_optimizer.device cpu needs 48.0 GiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 10.0 GiB are available"), std::string::npos) << msg;
  }
}

TEST(OffloadChunkPipeline, ChunkSizeIsSubGroupSizeCapped) {
  ZeroConfig z;
  EXPECT_EQ(offload_chunk_elems(z), kMaxOffloadChunk);  // the default 1e9
  z.sub_group_size = 1000;
  EXPECT_EQ(offload_chunk_elems(z), 1000u);
  z.sub_group_size = 0;
  EXPECT_EQ(offload_chunk_elems(z), 1u);
}

// On a GPU: HostOffloadOptimizer's real copies (pinned and pageable host memory, many chunks; the state in host
// memory and in NVMe swap files) give bitwise the CPU Adam's weights on the device and in its state; the sink sees
// them on the host, and without upload the device partition keeps the gradient.
TEST(HostOffloadOptimizerGpu, StepLeavesCpuAdamWeightsOnTheDevice) {
  ZT_REQUIRE_GPU();
  const size_t n = 100003;
  const std::vector<DecayRange> ranges = {{0, 60000, true}, {60000, 100003, false}};
  const std::vector<float> init = cuda::test::random_floats(n, 9, 0.1f);
  const std::string dir = std::string(ZT_BINARY_DIR) + "/host_offload_optimizer_gpu_test";
  std::filesystem::create_directories(dir);
  for (int variant = 0; variant < 4; ++variant) {
    const bool pinned = variant % 2 == 0, nvme = variant >= 2;
    SCOPED_TRACE(std::string(pinned ? "pinned" : "pageable") + (nvme ? " nvme" : " cpu"));
    Config cfg;
    if (nvme) {
      cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;
      cfg.zero.offload_optimizer.nvme_path = dir;
      cfg.zero.offload_optimizer.buffer_count = 3;
    }
    cfg.optimizer.type = OptimizerType::AdamW;
    cfg.optimizer.weight_decay = 0.1;
    cfg.zero.sub_group_size = 4096;
    cfg.zero.offload_optimizer.pin_memory = pinned;
    cudaStream_t stream = nullptr;
    ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    {
      HostOffloadOptimizer opt(cfg, n, ranges, init.data(), stream, 0);
      cuda::test::DeviceArray<float> partition(n);
      std::vector<float> ref = init, m(n, 0.0f), v(n, 0.0f);
      for (int64_t step = 1; step <= 3; ++step) {
        const std::vector<float> grads = cuda::test::random_floats(n, 200 + static_cast<uint32_t>(step));
        const double lr = 1e-3 * static_cast<double>(step);
        offload::cpu_adam_step(ref.data(), grads.data(), m.data(), v.data(), n,
                               offload::cpu_adam_hyper(cfg.optimizer, lr), step, ranges);
        // The gradient arrives on the compute stream, as the engine's does; the host waits before reusing it.
        ZT_CUDA_CHECK(cudaMemcpyAsync(partition.get(), grads.data(), n * sizeof(float), cudaMemcpyHostToDevice,
                                      stream));
        std::vector<float> seen(n, 0.0f);
        opt.step(partition.get(), lr, step, [&](size_t b, size_t len, const float* master) {
          std::memcpy(seen.data() + b, master, len * sizeof(float));
        });
        ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
        EXPECT_EQ(std::memcmp(seen.data(), ref.data(), n * sizeof(float)), 0) << "step " << step;
      }
      const std::vector<float> on_device = partition.download();
      EXPECT_EQ(std::memcmp(on_device.data(), ref.data(), n * sizeof(float)), 0);
      // Without upload the device partition is left as it was (offload_param reads the sink's host copy instead).
      const std::vector<float> grads = cuda::test::random_floats(n, 250);
      partition.upload(grads);
      opt.step(partition.get(), 1e-3, 4, {}, /*upload=*/false);
      ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
      EXPECT_EQ(std::memcmp(partition.download().data(), grads.data(), n * sizeof(float)), 0);
      offload::cpu_adam_step(ref.data(), grads.data(), m.data(), v.data(), n,
                             offload::cpu_adam_hyper(cfg.optimizer, 1e-3), 4, ranges);
      std::vector<float> host(n);
      opt.export_state("master", host.data());
      EXPECT_EQ(std::memcmp(host.data(), ref.data(), n * sizeof(float)), 0);
      opt.export_state("exp_avg", host.data());
      EXPECT_EQ(std::memcmp(host.data(), m.data(), n * sizeof(float)), 0);
      opt.export_state("exp_avg_sq", host.data());
      EXPECT_EQ(std::memcmp(host.data(), v.data(), n * sizeof(float)), 0);
    }
    ZT_CUDA_CHECK(cudaStreamDestroy(stream));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zt
