#include "engine/comm/cuda/cuda_device_copier.h"

#include <cuda_runtime.h>

#include "engine/base/error.h"

namespace zt::cuda {
namespace {

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    throw RuntimeError(std::string("CUDA error in ") + call + " (host-staged collective): " + cudaGetErrorString(e));
}

class CudaDeviceCopier : public DeviceCopier {
 public:
  explicit CudaDeviceCopier(cudaStream_t compute) : compute_(compute) {
    check(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~CudaDeviceCopier() override {
    cudaEventDestroy(ready_);
    cudaStreamDestroy(copy_);
  }
  void* alloc_host(size_t bytes) override {
    void* p = nullptr;
    check(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc");
    return p;
  }
  void free_host(void* p) override { cudaFreeHost(p); }
  void to_host(void* host, const void* device, size_t bytes) override {
    after_compute();
    check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, copy_), "cudaMemcpyAsync(device to host)");
  }
  void to_device(void* device, const void* host, size_t bytes) override {
    after_compute();
    check(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, copy_), "cudaMemcpyAsync(host to device)");
  }
  void synchronize() override { check(cudaStreamSynchronize(copy_), "cudaStreamSynchronize(copy stream)"); }
  std::string name() const override { return "cuda"; }

 private:
  // The copy stream is non-blocking, so it must be told to wait for the compute stream's queued work.
  void after_compute() {
    check(cudaEventRecord(ready_, compute_), "cudaEventRecord(compute stream)");
    check(cudaStreamWaitEvent(copy_, ready_, 0), "cudaStreamWaitEvent(copy stream)");
  }

  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

std::shared_ptr<DeviceCopier> make_cuda_device_copier(void* compute_stream) {
  return std::make_shared<CudaDeviceCopier>(static_cast<cudaStream_t>(compute_stream));
}

}  // namespace zt::cuda
