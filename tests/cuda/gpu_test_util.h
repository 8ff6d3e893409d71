#pragma once
// Helpers of the GPU tests: the "no GPU" skip, device arrays, and host copies in the three storage types.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/half_convert.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_info.h"

namespace zt::cuda::test {

// Every GPU test starts with this: without a device the test is reported as skipped with "no GPU".
#define ZT_REQUIRE_GPU()                                                    \
  do {                                                                      \
    if (::zt::cuda::visible_device_count() == 0) GTEST_SKIP() << "no GPU"; \
  } while (0)

// fp32 results must agree with the CPU kernel to 1e-5 relative (to the largest reference value); 16-bit storage
// rounds every stored value, so bf16 gets 2e-2 and fp16 (3 more mantissa bits) 1e-2.
template <typename T>
constexpr double tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return 2e-2;
  return 1e-2;
}

template <typename T>
uint16_t to_bits(float f) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return float_to_bf16(f);
  return float_to_fp16(f);
}

template <typename T>
float from_bits(uint16_t h) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return bf16_to_float(h);
  return fp16_to_float(h);
}

// Values as the storage type T holds them (rounded), so the CPU reference sees exactly the GPU's inputs.
template <typename T>
std::vector<float> round_to(const std::vector<float>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    std::vector<float> r(x.size());
    for (size_t i = 0; i < x.size(); i++) r[i] = from_bits<T>(to_bits<T>(x[i]));
    return r;
  }
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// A device buffer of n elements of T, filled from and read back into float vectors.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { ZT_CUDA_CHECK(cudaMalloc(&ptr_, bytes())); }
  explicit DeviceArray(const std::vector<float>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() { return static_cast<T*>(ptr_); }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T) + (n_ == 0 ? 1 : 0); }

  void upload(const std::vector<float>& host) {
    if constexpr (std::is_same_v<T, float>) {
      ZT_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(float), cudaMemcpyHostToDevice));
    } else {
      std::vector<uint16_t> bits(n_);
      for (size_t i = 0; i < n_; i++) bits[i] = to_bits<T>(host[i]);
      ZT_CUDA_CHECK(cudaMemcpy(ptr_, bits.data(), n_ * sizeof(uint16_t), cudaMemcpyHostToDevice));
    }
  }
  std::vector<float> download() const {
    ZT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> host(n_);
    if constexpr (std::is_same_v<T, float>) {
      ZT_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(float), cudaMemcpyDeviceToHost));
    } else {
      std::vector<uint16_t> bits(n_);
      ZT_CUDA_CHECK(cudaMemcpy(bits.data(), ptr_, n_ * sizeof(uint16_t), cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < n_; i++) host[i] = from_bits<T>(bits[i]);
    }
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_;
};

// Raw (non-float) device data: token ids, flags.
template <typename U>
class DeviceRaw {
 public:
  explicit DeviceRaw(const std::vector<U>& host) : n_(host.size()) {
    ZT_CUDA_CHECK(cudaMalloc(&ptr_, n_ * sizeof(U) + 1));
    ZT_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(U), cudaMemcpyHostToDevice));
  }
  ~DeviceRaw() { cudaFree(ptr_); }
  DeviceRaw(const DeviceRaw&) = delete;
  DeviceRaw& operator=(const DeviceRaw&) = delete;
  U* get() { return static_cast<U*>(ptr_); }
  std::vector<U> download() const {
    ZT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<U> host(n_);
    ZT_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(U), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_;
};

// max |ref - got| / max |ref| < tol, reported with the worst index.
inline void expect_close(const std::string& what, const std::vector<float>& ref, const std::vector<float>& got,
                         double tol) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double max_err = 0, max_ref = 0;
  size_t worst = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double err = std::fabs((double)ref[i] - (double)got[i]);
    ASSERT_FALSE(std::isnan(err)) << what << ": NaN at " << i << " (ref " << ref[i] << ", got " << got[i] << ")";
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
    max_ref = std::max(max_ref, std::fabs((double)ref[i]));
  }
  ASSERT_GT(max_ref, 0.0) << what << ": the reference is all zeros, the comparison would prove nothing";
  EXPECT_LT(max_err / max_ref, tol) << what << ": worst at " << worst << " ref " << ref[worst] << " got "
                                    << got[worst] << " (max |ref| " << max_ref << ")";
}

using StorageTypes = ::testing::Types<float, __nv_bfloat16, __half>;

// Names the typed tests "float", "bf16", "fp16" in ctest.
struct StorageTypeNames {
  template <typename T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, float>) return "fp32";
    if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bf16";
    return "fp16";
  }
};

}  // namespace zt::cuda::test
