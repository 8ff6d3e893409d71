#include "kernels/cuda/cuda_memory_backend.h"

#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"

namespace zt::cuda {
namespace {

class CudaMemoryBackend : public DeviceMemoryBackend {
 public:
  ~CudaMemoryBackend() override {
    // No check: at process exit the driver may already be gone, and a destructor must not throw.
    for (cudaEvent_t e : spare_events_) (void)cudaEventDestroy(e);
  }
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

  // Events are pooled: a training step frees blocks used on other streams every step, and creating an event costs
  // more than recording one.
  EventHandle record_event(StreamHandle stream) override {
    cudaEvent_t event = nullptr;
    if (spare_events_.empty()) {
      ZT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = spare_events_.back();
      spare_events_.pop_back();
    }
    const cudaError_t e = cudaEventRecord(event, static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) {
      spare_events_.push_back(event);
      check_cuda(e, "cudaEventRecord", __FILE__, __LINE__);
    }
    return event;
  }
  bool event_done(EventHandle event) override {
    const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();  // not an error: keep it from the next launch check
      return false;
    }
    check_cuda(e, "cudaEventQuery", __FILE__, __LINE__);
    return true;
  }
  void event_synchronize(EventHandle event) override {
    ZT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
  }
  void release_event(EventHandle event) override { spare_events_.push_back(static_cast<cudaEvent_t>(event)); }

 private:
  std::vector<cudaEvent_t> spare_events_;
};

}  // namespace

std::unique_ptr<DeviceMemoryBackend> make_cuda_memory_backend() { return std::make_unique<CudaMemoryBackend>(); }

}  // namespace zt::cuda
