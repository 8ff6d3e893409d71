#pragma once
// The real backend of CachingAllocator: cudaMalloc / cudaFree on the current device, and pooled cudaEvents
// (without timing) for the blocks used on several streams.
#include <memory>

#include "kernels/cuda/caching_allocator.h"

namespace zt::cuda {

std::unique_ptr<DeviceMemoryBackend> make_cuda_memory_backend();

}  // namespace zt::cuda
