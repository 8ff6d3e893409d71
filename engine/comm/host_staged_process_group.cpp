#include "engine/comm/host_staged_process_group.h"

#include <algorithm>
#include <functional>

#include "engine/base/error.h"

namespace zt {
namespace {

// Pinned buffers by capacity; a collective takes one for its lifetime and returns it when its work is waited.
class StagingPool {
 public:
  explicit StagingPool(std::shared_ptr<DeviceCopier> copier) : copier_(std::move(copier)) {}
  ~StagingPool() {
    for (auto& b : free_) copier_->free_host(b.ptr);
  }
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  Buffer take(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    // The smallest free buffer that fits; otherwise grow the largest one (pinned allocations are slow: keep few).
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->bytes >= bytes && (best == free_.end() || it->bytes < best->bytes)) best = it;
    if (best != free_.end()) {
      Buffer b = *best;
      free_.erase(best);
      return b;
    }
    if (!free_.empty()) {
      auto largest = std::max_element(free_.begin(), free_.end(),
                                      [](const Buffer& a, const Buffer& b) { return a.bytes < b.bytes; });
      copier_->free_host(largest->ptr);
      free_.erase(largest);
    }
    // Powers of two: a slowly growing message size costs a logarithmic number of allocations.
    size_t cap = size_t{1} << 16;
    while (cap < bytes) cap <<= 1;
    return Buffer{copier_->alloc_host(cap), cap};
  }
  void give_back(Buffer b) {
    std::lock_guard<std::mutex> g(mu_);
    free_.push_back(b);
  }

 private:
  std::shared_ptr<DeviceCopier> copier_;
  std::mutex mu_;
  std::vector<Buffer> free_;
};

// The host collective's work, then the copy back to the device; the staging buffer returns to the pool after.
class StagedWork : public Work {
 public:
  StagedWork(std::shared_ptr<Work> inner, std::function<void()> finish)
      : inner_(std::move(inner)), finish_(std::move(finish)) {}
  // A work dropped unwaited still owns its staging buffer until the host collective is done with it; otherwise the
  // next collective could take the buffer while this one still reads it.
  ~StagedWork() override {
    try {
      inner_->wait();
    } catch (...) {
    }
  }
  void wait() override {
    std::call_once(once_, [&] {
      try {
        inner_->wait();
      } catch (...) {
        finish_ = nullptr;
        error_ = std::current_exception();
        return;
      }
      finish_();
    });
    if (error_) std::rethrow_exception(error_);
  }
  bool is_completed() override { return inner_->is_completed(); }

 private:
  std::shared_ptr<Work> inner_;
  std::function<void()> finish_;
  std::once_flag once_;
  std::exception_ptr error_;
};

class HostStagedProcessGroup : public ProcessGroup {
 public:
  // Sub-groups share their parent's pool: one set of pinned buffers per process, however many groups.
  HostStagedProcessGroup(std::unique_ptr<ProcessGroup> host, std::shared_ptr<DeviceCopier> copier,
                         std::shared_ptr<StagingPool> pool = nullptr)
      : host_(std::move(host)), copier_(std::move(copier)),
        pool_(pool ? std::move(pool) : std::make_shared<StagingPool>(copier_)) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend_name() const override { return host_->backend_name() + "+" + copier_->name() + " staging"; }

  std::shared_ptr<Work> allreduce_async(void* buf, size_t count, DType t, ReduceOp op) override {
    const size_t bytes = count * dtype_size(t);
    auto b = stage_in(buf, bytes);
    return finish_with(host_->allreduce_async(b.ptr, count, t, op), b, buf, 0, bytes);
  }

  std::shared_ptr<Work> reduce_scatter_async(const void* in, void* out, size_t count, DType t,
                                             ReduceOp op) override {
    const size_t bytes = count * dtype_size(t);
    // One buffer: the input in front, the rank's reduced chunk behind it.
    auto b = stage_in(in, bytes * static_cast<size_t>(size()), bytes);
    char* host_out = static_cast<char*>(b.ptr) + bytes * static_cast<size_t>(size());
    return finish_with(host_->reduce_scatter_async(b.ptr, host_out, count, t, op), b, out,
                       bytes * static_cast<size_t>(size()), bytes);
  }

  std::shared_ptr<Work> allgather_async(const void* in, void* out, size_t count, DType t) override {
    const size_t bytes = count * dtype_size(t), total = bytes * static_cast<size_t>(size());
    StagingPool::Buffer b = pool_->take(std::max<size_t>(total, 1));
    char* mine = static_cast<char*>(b.ptr) + static_cast<size_t>(rank()) * bytes;
    copy_in(mine, in, bytes);
    return finish_with(host_->allgather_async(mine, b.ptr, count, t), b, out, 0, total);
  }

  std::shared_ptr<Work> broadcast_async(void* buf, size_t count, DType t, int root) override {
    const size_t bytes = count * dtype_size(t);
    auto b = stage_in(buf, bytes);
    return finish_with(host_->broadcast_async(b.ptr, count, t, root), b, buf, 0, bytes);
  }

  void barrier() override { host_->barrier(); }

  std::unique_ptr<ProcessGroup> new_group(const std::vector<int>& ranks) override {
    return std::make_unique<HostStagedProcessGroup>(host_->new_group(ranks), copier_, pool_);
  }

 private:
  // A staging buffer of bytes + extra, whose first bytes hold a copy of the device input.
  StagingPool::Buffer stage_in(const void* device, size_t bytes, size_t extra = 0) {
    StagingPool::Buffer b = pool_->take(std::max<size_t>(bytes + extra, 1));
    copy_in(b.ptr, device, bytes);
    return b;
  }
  void copy_in(void* host, const void* device, size_t bytes) {
    if (bytes == 0) return;
    copier_->to_host(host, device, bytes);
    // The host collective reads the buffer from another thread at once: the copy must have landed.
    copier_->synchronize();
  }
  std::shared_ptr<Work> finish_with(std::shared_ptr<Work> inner, StagingPool::Buffer b, void* device_out,
                                    size_t host_offset, size_t bytes) {
    auto copier = copier_;
    auto pool = pool_;
    // The buffer returns to the pool on success and on failure alike (the lambda's capture owns that).
    auto guard = std::shared_ptr<void>(nullptr, [pool, b](void*) { pool->give_back(b); });
    return std::make_shared<StagedWork>(std::move(inner), [copier, b, device_out, host_offset, bytes, guard] {
      if (bytes == 0) return;
      copier->to_device(device_out, static_cast<const char*>(b.ptr) + host_offset, bytes);
      copier->synchronize();
    });
  }

  std::unique_ptr<ProcessGroup> host_;
  std::shared_ptr<DeviceCopier> copier_;
  std::shared_ptr<StagingPool> pool_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_host_staged_process_group(std::unique_ptr<ProcessGroup> host_group,
                                                             std::shared_ptr<DeviceCopier> copier) {
  if (!host_group || !copier) throw RuntimeError("host-staged process group: needs a host group and a copier");
  return std::make_unique<HostStagedProcessGroup>(std::move(host_group), std::move(copier));
}

}  // namespace zt
