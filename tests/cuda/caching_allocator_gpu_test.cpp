// The caching allocator over real cudaMalloc: memory it hands out is usable, is reused, and goes back on release;
// a block used on a second stream is not handed out again while that stream's work on it is still queued.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_memory_backend.h"
#include "kernels/cuda/elementwise.h"

namespace {

using namespace zt::cuda::test;

constexpr size_t kMiB = size_t(1) << 20;

// Holds back everything queued on a stream after it, until open() (or 30 s, so that a failing test cannot hang): a
// host function that waits, so the test decides when the stream's work runs.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) : stream_(stream) {
    ZT_CUDA_CHECK(cudaLaunchHostFunc(stream_, &StreamGate::hold, this));
  }
  // The host function must be done with *this before it goes.
  ~StreamGate() {
    open();
    (void)cudaStreamSynchronize(stream_);
  }
  void open() { open_.store(true); }
  bool timed_out() const { return timed_out_.load(); }

 private:
  static void CUDART_CB hold(void* self) {
    auto* gate = static_cast<StreamGate*>(self);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!gate->open_.load()) {
      if (std::chrono::steady_clock::now() > deadline) {
        gate->timed_out_.store(true);
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  cudaStream_t stream_;
  std::atomic<bool> open_{false}, timed_out_{false};
};

struct Streams {
  cudaStream_t a = nullptr, b = nullptr;
  Streams() {
    ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
  }
  ~Streams() {
    (void)cudaStreamDestroy(a);
    (void)cudaStreamDestroy(b);
  }
};

TEST(CachingAllocatorGpu, HandsOutUsableReusedMemory) {
  ZT_REQUIRE_GPU();
  zt::cuda::CachingAllocator alloc(zt::cuda::make_cuda_memory_backend());
  for (int step = 0; step < 3; step++) {
    std::vector<void*> ps;
    for (size_t bytes : {size_t(1000), size_t(3) << 20, size_t(40000)}) {
      void* p = alloc.allocate(bytes);
      ZT_CUDA_CHECK(cudaMemset(p, 0x5a, bytes));
      ps.push_back(p);
    }
    std::vector<unsigned char> back(40000);
    ZT_CUDA_CHECK(cudaMemcpy(back.data(), ps[2], back.size(), cudaMemcpyDeviceToHost));
    for (unsigned char v : back) ASSERT_EQ(v, 0x5a);
    for (void* p : ps) alloc.free(p);
  }
  EXPECT_EQ(alloc.stats().backend_allocations, 2u);  // one small and one large segment, then only reuse
  EXPECT_GT(alloc.release_cached(), 0u);
  EXPECT_EQ(alloc.stats().reserved_bytes, 0u);
}

TEST(CachingAllocatorGpu, BlockUsedOnAnotherStreamWaitsForThatStream) {
  ZT_REQUIRE_GPU();
  Streams streams;  // outlives the allocator, whose pending events are recorded on them
  zt::cuda::CachingAllocator alloc(zt::cuda::make_cuda_memory_backend());
  const size_t n = 4 * kMiB / sizeof(float);  // a large block: a segment of its own
  const std::vector<float> values = random_floats(n, 7);
  DeviceArray<float> src(values);
  float* p = static_cast<float*>(alloc.allocate(n * sizeof(float), streams.a));
  // A bigger cached block on A, so that the request below needs no cudaMalloc while B is held.
  void* spare = alloc.allocate(10 * kMiB, streams.a);
  alloc.free(spare);
  {
    StreamGate gate(streams.b);
    zt::cuda::cast<float, float>(p, src.get(), n, streams.b);  // B writes p, after the free below
    alloc.record_stream(p, streams.b);
    alloc.free(p);
    void* r = alloc.allocate(n * sizeof(float), streams.a);
    EXPECT_NE(r, p) << "a block still written on stream B was handed out on A";
    EXPECT_EQ(r, spare);
    ZT_CUDA_CHECK(cudaMemsetAsync(r, 0, n * sizeof(float), streams.a));
    ZT_CUDA_CHECK(cudaStreamSynchronize(streams.a));  // A does not wait for B
    EXPECT_EQ(alloc.process_events(), 0u);           // B's event has not completed: the gate holds it
    EXPECT_EQ(alloc.stats().awaiting_blocks, 1u);
    alloc.free(r);
    gate.open();
    ZT_CUDA_CHECK(cudaStreamSynchronize(streams.b));
    ASSERT_FALSE(gate.timed_out()) << "stream B was held for 30 s";
  }
  // B's copy is intact in p, and p is A's again.
  std::vector<float> back(n);
  ZT_CUDA_CHECK(cudaMemcpy(back.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(back.data(), values.data(), n * sizeof(float)), 0);
  void* again = alloc.allocate(n * sizeof(float), streams.a);  // polls the events: best fit is p
  EXPECT_EQ(again, p);
  EXPECT_EQ(alloc.stats().awaiting_blocks, 0u);
  EXPECT_EQ(alloc.stats().backend_allocations, 2u);
  // A pending event that release_cached waits for (the pooled event is recorded again).
  alloc.record_stream(again, streams.b);
  alloc.free(again);
  EXPECT_EQ(alloc.release_cached(), 14 * kMiB);
  EXPECT_EQ(alloc.stats().reserved_bytes, 0u);
}

}  // namespace
