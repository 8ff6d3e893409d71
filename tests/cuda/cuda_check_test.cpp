// The error checks run on the CPU: turning a status into a message needs no device.
#include <gtest/gtest.h>

#include <string>

#include "engine/base/error.h"
#include "kernels/cuda/cuda_check.h"

namespace {

std::string message_of(void (*fn)()) {
  try {
    fn();
  } catch (const zt::RuntimeError& e) {
    return e.what();
  }
  return "";
}

const int kRuntimeCallLine = __LINE__ + 1;
void failing_runtime_call() { ZT_CUDA_CHECK(cudaErrorInvalidValue); }
const int kCublasCallLine = __LINE__ + 1;
void failing_cublas_call() { ZT_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); }

TEST(CudaCheck, RuntimeErrorNamesCallErrorAndPlace) {
  const std::string msg = message_of(failing_runtime_call);
  EXPECT_NE(msg.find("cudaErrorInvalidValue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda_check_test.cpp:" + std::to_string(kRuntimeCallLine)), std::string::npos) << msg;
}

TEST(CudaCheck, CublasErrorNamesStatusAndPlace) {
  const std::string msg = message_of(failing_cublas_call);
  EXPECT_NE(msg.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUBLAS_STATUS_INVALID_VALUE failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda_check_test.cpp:" + std::to_string(kCublasCallLine)), std::string::npos) << msg;
}

TEST(CudaCheck, SuccessDoesNotThrow) {
  EXPECT_NO_THROW(ZT_CUDA_CHECK(cudaSuccess));
  EXPECT_NO_THROW(ZT_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
}

}  // namespace
