#include "engine/zero/cuda/pinned_host_allocator.h"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "offload/pinned_buffer_pool.h"

namespace zt::cuda {
namespace {

// posix_memalign + cudaHostRegister rather than cudaHostAlloc: the pool's contract is 4096-byte alignment, which
// cudaHostAlloc does not promise. If CUDA refuses to register (driver limits), the buffer stays pageable: slower
// copies, the same results; the first refusal is logged.
void* allocate_registered(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) return nullptr;
  const cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: keep it from reaching the next launch check
    static bool warned = false;
    if (!warned) {
      warned = true;
      spdlog::warn("cudaHostRegister of a {} byte offload buffer failed ({}): it stays pageable, so its copies to "
                   "and from the GPU do not overlap compute",
                   bytes, cudaGetErrorString(e));
    }
  }
  return p;
}

void release_registered(void* p, size_t) {
  if (p == nullptr) return;
  if (cudaHostUnregister(p) != cudaSuccess) cudaGetLastError();  // it was never registered
  std::free(p);
}

}  // namespace

void use_pinned_host_buffers() {
  offload::set_host_allocator({allocate_registered, release_registered, /*pinned=*/true});
}

}  // namespace zt::cuda
