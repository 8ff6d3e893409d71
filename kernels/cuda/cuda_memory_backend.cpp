#include "kernels/cuda/cuda_memory_backend.h"

#include <string>

#include "kernels/cuda/cuda_check.h"

namespace zt::cuda {
namespace {

class CudaMemoryBackend : public DeviceMemoryBackend {
 public:
  void* allocate(size_t bytes) override {
    void* ptr = nullptr;
    const cudaError_t e = cudaMalloc(&ptr, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-until-read error so the next launch check does not see it
      return nullptr;
    }
    check_cuda(e, ("cudaMalloc(" + std::to_string(bytes) + " bytes)").c_str(), __FILE__, __LINE__);
    return ptr;
  }
  void deallocate(void* ptr, size_t) override { ZT_CUDA_CHECK(cudaFree(ptr)); }
};

}  // namespace

std::unique_ptr<DeviceMemoryBackend> make_cuda_memory_backend() { return std::make_unique<CudaMemoryBackend>(); }

}  // namespace zt::cuda
