#pragma once
// One process-group interface (c10d's shape): collectives with async work handles; Gloo and NCCL behind it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace zt {

class Store;

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
  // Makes `stream` (a cudaStream_t) wait on the device for this work without blocking the host, so that kernels
  // queued on it afterwards see the result. Returns false when the backend cannot (its result reaches the buffer only
  // in wait(), as the host-staged path's copy back): then the caller must wait(). Either way wait() must still be
  // called once to report a failure or a timeout.
  virtual bool wait_on_stream(void* stream) {
    (void)stream;
    return false;
  }
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

// Where a collective's buffers live. Gloo serves host buffers, and device buffers by staging them through pinned
// host memory; NCCL serves CUDA buffers only.
enum class Device { Cpu, Cuda };

// A process group of world_size ranks meeting through store (which holds one namespace per group), for buffers on
// `buffers`. Host buffers: Auto and Gloo give Gloo; Nccl is a RuntimeError. CUDA buffers: Auto gives NCCL when this
// build has it and every local rank has a GPU of its own (NCCL refuses two ranks on one GPU), else Gloo with host
// staging; Gloo gives Gloo with host staging; Nccl gives NCCL. Asking for CUDA buffers without a visible GPU (or
// without CUDA in the build) is a RuntimeError.
// timeout_s bounds every collective and the rendezvous; a collective past it throws a RuntimeError naming it and,
// for Gloo, the ranks that never arrived.
// Collectives run in the order they are issued and every rank must issue the same sequence on a group (c10d's rule):
// the async variants are queued on one worker thread per group, so issuing order is execution order.
std::unique_ptr<ProcessGroup> make_process_group(CommBackend backend, int rank, int world_size,
                                                 std::shared_ptr<Store> store, double timeout_s,
                                                 Device buffers = Device::Cpu, int local_world_size = 1);

// The Gloo process group directly. local_address is the address peers reach this process at (empty: the address of
// the interface that routes to the store's host, or loopback).
std::unique_ptr<ProcessGroup> make_gloo_process_group(int rank, int world_size, std::shared_ptr<Store> store,
                                                      double timeout_s, const std::string& local_address = "");

// True when this build has the NCCL backend and at least one GPU is visible.
bool nccl_available();

const char* reduce_op_name(ReduceOp op);

// A sub-group's members as every backend needs them: the requested global ranks sorted and de-duplicated, this
// process's index among them, and a key naming the member list ("0,2,3"). Throws RuntimeError when this rank is not
// a member or a member is not in the parent group (parent_name names it in the message).
struct SubgroupMembers {
  std::vector<int> ranks;
  int rank_in_group = 0;
  std::string key;
};
SubgroupMembers subgroup_members(const std::vector<int>& requested, int global_rank,
                                 const std::vector<int>& parent_ranks, const std::string& parent_name);

}  // namespace zt
