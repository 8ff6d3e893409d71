// NCCL process group: one communicator and one non-blocking communication stream per group. Ordering against
// compute: an event recorded on the caller's default stream is waited on by the comm stream before each collective;
// the other way, Work::wait_on_stream makes a compute stream wait for the collective's completion event.
#include "engine/comm/cuda/nccl_process_group.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "engine/base/error.h"
#include "engine/comm/store.h"

namespace zt::cuda {
namespace {

using Clock = std::chrono::steady_clock;

void check_cuda(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw RuntimeError("CUDA error in " + what + ": " + cudaGetErrorString(e));
}
// Whether the event has completed, without waiting. cudaErrorNotReady is cleared from the runtime's last error, which
// the engines' kernel-launch checks (cudaGetLastError) would otherwise report as a failed launch.
bool event_done(cudaEvent_t event, const std::string& what) {
  const cudaError_t q = cudaEventQuery(event);
  if (q == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  check_cuda(q, what);
  return true;
}
void check_nccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw RuntimeError("NCCL error in " + what + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
  }
  return ncclFloat32;
}
ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}
const char* type_name(DType t) { return t == DType::F32 ? "f32" : t == DType::BF16 ? "bf16" : "f16"; }

// ncclCommAbort frees the communicator: once a work aborted it (timeout, asynchronous error), the group and its
// other works must not pass it to NCCL again (ncclCommDestroy or ncclCommGetAsyncError on it would be a
// use-after-free), so they share this flag.
using AbortedFlag = std::shared_ptr<bool>;

class NcclWork : public Work {
 public:
  NcclWork(cudaEvent_t done, ncclComm_t comm, AbortedFlag aborted, std::string what, double timeout_s)
      : done_(done), comm_(comm), aborted_(std::move(aborted)), what_(std::move(what)), timeout_s_(timeout_s) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override {
    auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
    while (true) {
      if (event_done(done_, what_)) return;
      if (*aborted_) throw RuntimeError(what_ + ": the NCCL communicator was aborted by an earlier failure");
      ncclResult_t async_err = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async_err);
      if (async_err != ncclSuccess) {
        // NCCL's kernels may never finish after an asynchronous error: abort, or the group's destructor (stream
        // synchronize) would hang while the error propagates.
        abort();
        check_nccl(async_err, what_);
      }
      if (Clock::now() > deadline) {
        abort();
        char secs[32];
        std::snprintf(secs, sizeof(secs), "%g", timeout_s_);
        throw RuntimeError(what_ + " timed out after " + secs + " s (NCCL); communicator aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  bool is_completed() override { return event_done(done_, what_); }
  void abort() {
    ncclCommAbort(comm_);
    *aborted_ = true;
  }
  bool wait_on_stream(void* stream) override {
    check_cuda(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), done_, 0), what_);
    return true;
  }

 private:
  cudaEvent_t done_;
  ncclComm_t comm_;
  AbortedFlag aborted_;
  std::string what_;
  double timeout_s_;
};

class NcclProcessGroup : public ProcessGroup {
 public:
  NcclProcessGroup(int rank, std::vector<int> global_ranks, int global_rank, std::shared_ptr<Store> store,
                   std::string key, double timeout_s)
      : rank_(rank), global_ranks_(std::move(global_ranks)), global_rank_(global_rank), store_(std::move(store)),
        key_(std::move(key)), timeout_s_(timeout_s) {
    ncclUniqueId id;
    if (rank_ == 0) {
      check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
      store_->set(key_, std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
    } else {
      auto v = store_->get(key_);
      if (v.size() != sizeof(id.internal)) throw RuntimeError("NCCL unique id under '" + key_ + "' has a bad size");
      std::copy(v.begin(), v.end(), id.internal);
    }
    check_nccl(ncclCommInitRank(&comm_, size(), id, rank_), "ncclCommInitRank (rank " + std::to_string(global_rank_) + ")");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
  }
  ~NcclProcessGroup() override {
    cudaStreamSynchronize(stream_);
    if (!*aborted_) ncclCommDestroy(comm_);  // an aborted communicator is already freed
    cudaStreamDestroy(stream_);
    cudaFree(scratch_);
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(global_ranks_.size()); }
  std::string backend_name() const override { return "nccl"; }

  std::shared_ptr<Work> allreduce_async(void* buf, size_t count, DType t, ReduceOp op) override {
    return launch(describe("allreduce", count, t), [&] {
      return ncclAllReduce(buf, buf, count, nccl_type(t), nccl_op(op), comm_, stream_);
    });
  }
  std::shared_ptr<Work> reduce_scatter_async(const void* in, void* out, size_t count, DType t,
                                             ReduceOp op) override {
    return launch(describe("reduce_scatter", count, t), [&] {
      return ncclReduceScatter(in, out, count, nccl_type(t), nccl_op(op), comm_, stream_);
    });
  }
  std::shared_ptr<Work> allgather_async(const void* in, void* out, size_t count, DType t) override {
    return launch(describe("allgather", count, t),
                  [&] { return ncclAllGather(in, out, count, nccl_type(t), comm_, stream_); });
  }
  std::shared_ptr<Work> broadcast_async(void* buf, size_t count, DType t, int root) override {
    return launch(describe("broadcast", count, t),
                  [&] { return ncclBroadcast(buf, buf, count, nccl_type(t), root, comm_, stream_); });
  }
  void barrier() override {
    launch("barrier", [&] { return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_); })
        ->wait();
  }

  std::unique_ptr<ProcessGroup> new_group(const std::vector<int>& ranks) override {
    const SubgroupMembers g = subgroup_members(ranks, global_rank_, global_ranks_, key_);
    int nth = subgroup_count_[g.key]++;
    return std::make_unique<NcclProcessGroup>(g.rank_in_group, g.ranks, global_rank_, store_,
                                              key_ + "/[" + g.key + "]#" + std::to_string(nth), timeout_s_);
  }

 private:
  std::string describe(const char* op, size_t count, DType t) const {
    return std::string(op) + " of " + std::to_string(count) + " " + type_name(t) + " elements on rank " +
           std::to_string(global_rank_) + " (group of " + std::to_string(size()) + ")";
  }

  template <typename F>
  std::shared_ptr<Work> launch(const std::string& what, F&& call) {
    if (*aborted_) throw RuntimeError(what + ": the NCCL communicator was aborted by an earlier failure");
    cudaEvent_t ready, done;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), what);
    check_cuda(cudaEventRecord(ready, cudaStreamLegacy), what);
    check_cuda(cudaStreamWaitEvent(stream_, ready, 0), what);
    cudaEventDestroy(ready);
    check_nccl(call(), what);
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), what);
    check_cuda(cudaEventRecord(done, stream_), what);
    return std::make_shared<NcclWork>(done, comm_, aborted_, what, timeout_s_);
  }

  int rank_;
  std::vector<int> global_ranks_;
  int global_rank_;
  std::shared_ptr<Store> store_;
  std::string key_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  AbortedFlag aborted_ = std::make_shared<bool>(false);
  cudaStream_t stream_ = nullptr;
  float* scratch_ = nullptr;
  std::map<std::string, int> subgroup_count_;
};

}  // namespace

int nccl_visible_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::unique_ptr<ProcessGroup> make_nccl_process_group(int rank, int world_size, std::shared_ptr<Store> store,
                                                      double timeout_s) {
  std::vector<int> ranks(static_cast<size_t>(world_size));
  for (int i = 0; i < world_size; ++i) ranks[static_cast<size_t>(i)] = i;
  return std::make_unique<NcclProcessGroup>(rank, ranks, rank, std::move(store), "nccl/uid", timeout_s);
}

}  // namespace zt::cuda
