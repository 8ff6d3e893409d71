// The GPU path's offload buffer pools are registered with CUDA (page-locked as CUDA knows it), so that copies from
// them are asynchronous; an unregistered buffer reports cudaMemoryTypeUnregistered.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "engine/zero/cuda/pinned_host_allocator.h"
#include "gpu_test_util.h"
#include "offload/pinned_buffer_pool.h"

namespace zt::cuda {
namespace {

TEST(PinnedHostAllocatorGpu, PoolBuffersAreRegisteredWithCuda) {
  ZT_REQUIRE_GPU();
  use_pinned_host_buffers();
  {
    offload::PinnedBufferPool pool(2, 3 * 4096 + 5);
    for (int i = 0; i < 2; ++i) {
      void* p = pool.acquire();
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
      cudaPointerAttributes attr{};
      ZT_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
      EXPECT_EQ(attr.type, cudaMemoryTypeHost) << "buffer " << i << " is not registered with CUDA";
    }
    EXPECT_TRUE(pool.locked());
  }
  offload::set_host_allocator({});  // the default for the tests that follow in this process
  offload::PinnedBufferPool plain(1, 4096, /*pin=*/false);
  cudaPointerAttributes attr{};
  ZT_CUDA_CHECK(cudaPointerGetAttributes(&attr, plain.acquire()));
  EXPECT_EQ(attr.type, cudaMemoryTypeUnregistered);
}

}  // namespace
}  // namespace zt::cuda
