#pragma once
// Reusable float buffers for units whose full tensors exist only while in use (stage-2 gradients, stage-3
// parameters). Buffers go back to the pool instead of the allocator, so steady-state steps allocate nothing.
#include <cstddef>
#include <memory>
#include <vector>

namespace zt {

class UnitBufferPool {
 public:
  // A zero-filled buffer of at least n floats (zero fill optional).
  float* acquire(size_t n, bool zero);
  void release(float* p);
  size_t bytes_in_use() const { return in_use_bytes_; }
  size_t peak_bytes_in_use() const { return peak_in_use_bytes_; }
  size_t bytes_held() const;

 private:
  struct Slot {
    std::unique_ptr<float[]> data;
    size_t capacity = 0;
    bool used = false;
  };
  std::vector<Slot> slots_;
  size_t in_use_bytes_ = 0;
  size_t peak_in_use_bytes_ = 0;
};

}  // namespace zt
