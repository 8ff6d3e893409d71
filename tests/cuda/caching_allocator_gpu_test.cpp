// The caching allocator over real cudaMalloc: memory it hands out is usable, is reused, and goes back on release.
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_memory_backend.h"

namespace {

using namespace zt::cuda::test;

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

}  // namespace
