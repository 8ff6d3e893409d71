#pragma once
// One process-group interface (c10d's shape): collectives with async work handles; Gloo and NCCL behind it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zt {

enum class DType { F32, BF16, F16 };
enum class ReduceOp { Sum, Avg, Max };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done; throws RuntimeError naming the operation when it failed or outlived the timeout.
  virtual void wait() = 0;
  virtual bool is_completed() = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;

  // In place over count elements.
  virtual std::shared_ptr<Work> allreduce_async(void* buf, size_t count, DType t, ReduceOp op) = 0;
  // in: size()*count elements; out: count elements, the reduced chunk rank() owns.
  virtual std::shared_ptr<Work> reduce_scatter_async(const void* in, void* out, size_t count, DType t,
                                                     ReduceOp op) = 0;
  // in: count elements; out: size()*count elements, rank i's chunk at i*count. in may alias out + rank()*count.
  virtual std::shared_ptr<Work> allgather_async(const void* in, void* out, size_t count, DType t) = 0;
  virtual std::shared_ptr<Work> broadcast_async(void* buf, size_t count, DType t, int root) = 0;
  virtual void barrier() = 0;

  void allreduce(void* buf, size_t count, DType t, ReduceOp op) { allreduce_async(buf, count, t, op)->wait(); }
  void reduce_scatter(const void* in, void* out, size_t count, DType t, ReduceOp op) {
    reduce_scatter_async(in, out, count, t, op)->wait();
  }
  void allgather(const void* in, void* out, size_t count, DType t) { allgather_async(in, out, count, t)->wait(); }
  void broadcast(void* buf, size_t count, DType t, int root) { broadcast_async(buf, count, t, root)->wait(); }

  // A sub-group over global ranks (sorted, containing this rank); collective over this group's members.
  virtual std::unique_ptr<ProcessGroup> new_group(const std::vector<int>& ranks) = 0;
};

}  // namespace zt
