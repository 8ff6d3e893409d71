// The offloaded step's order of work (engine/zero/cuda/offload_chunk_pipeline.h) against a fake device whose memory
// is a host vector and whose copy stream runs queued copies in order only when the pipeline waits (or at seeded
// random moments), so an update before its download has landed sees poisoned values and a missing copy shows as an
// element copied zero or two times. Runs on the CPU. The HostOffloadOptimizer test at the end needs a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/cuda/offload_chunk_pipeline.h"
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

TEST(OffloadChunkPipeline, ChunkSizeIsSubGroupSizeCapped) {
  ZeroConfig z;
  EXPECT_EQ(offload_chunk_elems(z), kMaxOffloadChunk);  // the default 1e9
  z.sub_group_size = 1000;
  EXPECT_EQ(offload_chunk_elems(z), 1000u);
  z.sub_group_size = 0;
  EXPECT_EQ(offload_chunk_elems(z), 1u);
}

// On a GPU: HostOffloadOptimizer's real copies (pinned and pageable host memory, many chunks) give bitwise the CPU
// Adam's weights on the device and in its host state.
TEST(HostOffloadOptimizerGpu, StepLeavesCpuAdamWeightsOnTheDevice) {
  ZT_REQUIRE_GPU();
  const size_t n = 100003;
  const std::vector<DecayRange> ranges = {{0, 60000, true}, {60000, 100003, false}};
  const std::vector<float> init = cuda::test::random_floats(n, 9, 0.1f);
  for (bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "pinned" : "pageable");
    Config cfg;
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
        opt.step(partition.get(), lr, step);
        ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
      }
      const std::vector<float> on_device = partition.download();
      EXPECT_EQ(std::memcmp(on_device.data(), ref.data(), n * sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(opt.state("master"), ref.data(), n * sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(opt.state("exp_avg"), m.data(), n * sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(opt.state("exp_avg_sq"), v.data(), n * sizeof(float)), 0);
    }
    ZT_CUDA_CHECK(cudaStreamDestroy(stream));
  }
}

}  // namespace
}  // namespace zt
