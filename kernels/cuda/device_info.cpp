#include "kernels/cuda/device_info.h"

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"

namespace zt::cuda {

int visible_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // "no device" must not linger as the error a later launch check reports
    return 0;
  }
  return n;
}

void set_current_device(int index) { ZT_CUDA_CHECK(cudaSetDevice(index)); }

}  // namespace zt::cuda
