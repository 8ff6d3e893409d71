#pragma once
// Every CUDA runtime call, cuBLASLt call and kernel launch goes through these checks, so that a failure throws a
// zt::RuntimeError naming the call, the error and the file:line, instead of surfacing later at an unrelated call.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/base/error.h"

namespace zt::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  throw RuntimeError(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + call + " failed: " +
                     cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  throw RuntimeError(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " + call +
                     " failed: status " + std::to_string(static_cast<int>(s)) + " (" + cublasLtGetStatusName(s) +
                     ": " + cublasLtGetStatusString(s) + ")");
}

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, call, file, line);
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_cublas_error(s, call, file, line);
}

// A launch reports bad configurations (grid, shared memory) only through cudaGetLastError; faults inside the kernel
// show at the next synchronizing call, which is itself checked.
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda_error(e, (std::string("launch of ") + kernel).c_str(), file, line);
}

}  // namespace zt::cuda

#define ZT_CUDA_CHECK(call) ::zt::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define ZT_CUBLAS_CHECK(call) ::zt::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define ZT_CUDA_CHECK_LAUNCH(kernel) ::zt::cuda::check_launch(kernel, __FILE__, __LINE__)
