// One rank of a multi-process comm test. Joins the job from the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...),
// runs the collectives of the chosen mode, checks each result against a reference computed locally, and exits
// non-zero with a message on the first mismatch or error.
//   zt_comm_worker check                 every collective x dtype x count x op, async overlap, sub-groups
//   zt_comm_worker sleep <rank> <secs>   <rank> sleeps before an allreduce (the others must time out)
//   zt_comm_worker throw <rank>          <rank> throws a RuntimeError after joining
//   zt_comm_worker selfkill <rank>       <rank> SIGKILLs itself while the others run allreduces
//   zt_comm_worker staged                the checks of `check` through the host-staged group, with a copier whose
//                                        "device" is host memory (prints the copier's traffic)
//   zt_comm_worker staged_cuda           the same on real CUDA buffers through Gloo with pinned staging (GPU only)
// ZT_TEST_TIMEOUT_S sets comm.timeout_s (default 30).
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/base/error.h"
#include "engine/comm/distributed.h"
#include "kernels/cpu/half_convert.h"
#include "engine/comm/host_staged_process_group.h"

#ifdef ZT_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/comm/cuda/cuda_device_copier.h"
#endif

namespace {

using namespace zt;

// Small integers: sums of up to four ranks stay exact in bf16 and f16, so Sum and Max compare exactly.
float input_value(int rank, size_t i, int salt) {
  return static_cast<float>(static_cast<int>((static_cast<size_t>(rank) * 7 + i * 3 + static_cast<size_t>(salt)) % 17) - 8);
}

std::vector<char> encode(const std::vector<float>& v, DType t) {
  std::vector<char> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::F32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = t == DType::BF16 ? float_to_bf16(v[i]) : float_to_fp16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> decode(const std::vector<char>& b, DType t) {
  size_t n = b.size() / dtype_size(t);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::F32) {
      std::memcpy(&v[i], b.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      v[i] = t == DType::BF16 ? bf16_to_float(h) : fp16_to_float(h);
    }
  }
  return v;
}

float reference(const std::vector<int>& ranks, size_t i, int salt, ReduceOp op) {
  double acc = op == ReduceOp::Max ? -1e30 : 0.0;
  for (int r : ranks) {
    double x = input_value(r, i, salt);
    acc = op == ReduceOp::Max ? std::max(acc, x) : acc + x;
  }
  if (op == ReduceOp::Avg) acc /= static_cast<double>(ranks.size());
  return static_cast<float>(acc);
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, DType t, const std::string& what,
                  int rank) {
  double rel = t == DType::F32 ? 1e-6 : t == DType::BF16 ? 1.6e-2 : 2e-3;
  for (size_t i = 0; i < want.size(); ++i)
    if (std::fabs(got[i] - want[i]) > rel * std::fabs(want[i]) + 1e-6)
      throw RuntimeError("MISMATCH in " + what + " on rank " + std::to_string(rank) + " at element " +
                         std::to_string(i) + ": got " + std::to_string(got[i]) + ", want " + std::to_string(want[i]));
}

// Every collective on group g, whose members are the global ranks in members (g->rank() indexes it).
int check_group(ProcessGroup& g, const std::vector<int>& members, int salt) {
  int me = members[static_cast<size_t>(g.rank())];
  int n = g.size(), checks = 0;
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{1001}}) {
      std::string tag = std::string(dtype_name(t)) + " x" + std::to_string(count) + " (group of " +
                        std::to_string(n) + ")";
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
        std::vector<float> mine(count), want(count);
        for (size_t i = 0; i < count; ++i) {
          mine[i] = input_value(me, i, salt);
          want[i] = reference(members, i, salt, op);
        }
        auto buf = encode(mine, t);
        g.allreduce(buf.data(), count, t, op);
        expect_close(decode(buf, t), want, t, std::string("allreduce ") + reduce_op_name(op) + " " + tag, me);

        // reduce_scatter: element j of chunk c is input index c*count + j.
        std::vector<float> full(count * static_cast<size_t>(n)), chunk_want(count);
        for (size_t i = 0; i < full.size(); ++i) full[i] = input_value(me, i, salt);
        for (size_t j = 0; j < count; ++j)
          chunk_want[j] = reference(members, static_cast<size_t>(g.rank()) * count + j, salt, op);
        auto in = encode(full, t);
        std::vector<char> out(count * dtype_size(t));
        g.reduce_scatter(in.data(), out.data(), count, t, op);
        expect_close(decode(out, t), chunk_want, t, std::string("reduce_scatter ") + reduce_op_name(op) + " " + tag,
                     me);
        checks += 2;
      }
      // allgather, both from a separate input and in place (input aliasing the output's own chunk).
      for (bool in_place : {false, true}) {
        std::vector<float> mine(count), want(count * static_cast<size_t>(n));
        for (size_t i = 0; i < count; ++i) mine[i] = input_value(me, i, salt);
        for (int k = 0; k < n; ++k)
          for (size_t i = 0; i < count; ++i)
            want[static_cast<size_t>(k) * count + i] = input_value(members[static_cast<size_t>(k)], i, salt);
        auto in = encode(mine, t);
        std::vector<char> out(want.size() * dtype_size(t), 0);
        char* own = out.data() + static_cast<size_t>(g.rank()) * in.size();
        if (in_place) std::memcpy(own, in.data(), in.size());
        g.allgather(in_place ? own : in.data(), out.data(), count, t);
        expect_close(decode(out, t), want, t, std::string("allgather") + (in_place ? " in place " : " ") + tag, me);
        ++checks;
      }
      for (int root = 0; root < n; ++root) {
        std::vector<float> mine(count), want(count);
        for (size_t i = 0; i < count; ++i) {
          mine[i] = input_value(me, i, salt + 1);
          want[i] = input_value(members[static_cast<size_t>(root)], i, salt + 1);
        }
        auto buf = encode(mine, t);
        g.broadcast(buf.data(), count, t, root);
        expect_close(decode(buf, t), want, t, "broadcast from " + std::to_string(root) + " " + tag, me);
        ++checks;
      }
    }
  }
  g.barrier();
  return checks;
}

// Async: queue an allreduce and a reduce_scatter, compute meanwhile, then wait; results must be those of the
// synchronous calls.
int check_async(ProcessGroup& g, int rank) {
  int n = g.size();
  size_t count = 1 << 18;
  std::vector<int> all(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  std::vector<float> a(count), b(count * static_cast<size_t>(n)), out(count);
  for (size_t i = 0; i < count; ++i) a[i] = input_value(rank, i, 3);
  for (size_t i = 0; i < b.size(); ++i) b[i] = input_value(rank, i, 5);
  auto w1 = g.allreduce_async(a.data(), count, DType::F32, ReduceOp::Sum);
  auto w2 = g.reduce_scatter_async(b.data(), out.data(), count, DType::F32, ReduceOp::Max);
  double busy = 0;  // work overlapping the collectives
  for (int k = 0; k < 2000000; ++k) busy += std::sqrt(static_cast<double>(k));
  w2->wait();
  w1->wait();
  if (!w1->is_completed() || !w2->is_completed()) throw RuntimeError("async work not completed after wait()");
  std::vector<float> want_a(count), want_out(count);
  for (size_t i = 0; i < count; ++i) {
    want_a[i] = reference(all, i, 3, ReduceOp::Sum);
    want_out[i] = reference(all, static_cast<size_t>(rank) * count + i, 5, ReduceOp::Max);
  }
  expect_close(a, want_a, DType::F32, "async allreduce", rank);
  expect_close(out, want_out, DType::F32, "async reduce_scatter", rank);
  return busy > 0 ? 2 : 0;
}

// A copier whose "device" is ordinary memory: exercises the staging logic on CPU and counts its traffic.
class CountingHostCopier : public DeviceCopier {
 public:
  void* alloc_host(size_t bytes) override {
    ++allocations;
    return std::malloc(bytes);
  }
  void free_host(void* p) override { std::free(p); }
  void to_host(void* host, const void* device, size_t bytes) override {
    std::memcpy(host, device, bytes);
    to_host_bytes += bytes;
  }
  void to_device(void* device, const void* host, size_t bytes) override {
    std::memcpy(device, host, bytes);
    to_device_bytes += bytes;
  }
  void synchronize() override {}
  std::string name() const override { return "counting"; }
  size_t allocations = 0, to_host_bytes = 0, to_device_bytes = 0;
};

#ifdef ZT_HAVE_CUDA
// Presents a device group (buffers in GPU memory) to the host-buffer checks: each call copies the host buffers to
// the GPU, runs the device collective there, and copies the results back.
class DeviceShim : public ProcessGroup {
 public:
  explicit DeviceShim(std::unique_ptr<ProcessGroup> dev) : dev_(std::move(dev)) {}
  ~DeviceShim() override { cudaFree(scratch_); }
  int rank() const override { return dev_->rank(); }
  int size() const override { return dev_->size(); }
  std::string backend_name() const override { return dev_->backend_name(); }
  std::shared_ptr<Work> allreduce_async(void* buf, size_t count, DType t, ReduceOp op) override {
    size_t b = count * dtype_size(t);
    char* d = up(buf, b, 0);
    dev_->allreduce(d, count, t, op);
    down(buf, d, b);
    return done();
  }
  std::shared_ptr<Work> reduce_scatter_async(const void* in, void* out, size_t count, DType t,
                                             ReduceOp op) override {
    size_t b = count * dtype_size(t), n = static_cast<size_t>(size());
    char* d = up(in, b * n, b);
    dev_->reduce_scatter(d, d + b * n, count, t, op);
    down(out, d + b * n, b);
    return done();
  }
  std::shared_ptr<Work> allgather_async(const void* in, void* out, size_t count, DType t) override {
    size_t b = count * dtype_size(t), n = static_cast<size_t>(size());
    char* d = up(in, b, b * n);
    dev_->allgather(d, d + b, count, t);
    down(out, d + b, b * n);
    return done();
  }
  std::shared_ptr<Work> broadcast_async(void* buf, size_t count, DType t, int root) override {
    size_t b = count * dtype_size(t);
    char* d = up(buf, b, 0);
    dev_->broadcast(d, count, t, root);
    down(buf, d, b);
    return done();
  }
  void barrier() override { dev_->barrier(); }
  std::unique_ptr<ProcessGroup> new_group(const std::vector<int>& ranks) override {
    return std::make_unique<DeviceShim>(dev_->new_group(ranks));
  }

 private:
  class Done : public Work {
   public:
    void wait() override {}
    bool is_completed() override { return true; }
  };
  static std::shared_ptr<Work> done() { return std::make_shared<Done>(); }
  char* up(const void* host, size_t bytes, size_t extra) {
    if (bytes + extra > cap_) {
      cudaFree(scratch_);
      cap_ = bytes + extra;
      if (cudaMalloc(&scratch_, cap_) != cudaSuccess) throw RuntimeError("cudaMalloc failed in the test shim");
    }
    if (cudaMemcpy(scratch_, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
      throw RuntimeError("cudaMemcpy to device failed in the test shim");
    return static_cast<char*>(scratch_);
  }
  static void down(void* host, const void* dev, size_t bytes) {
    if (cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
      throw RuntimeError("cudaMemcpy to host failed in the test shim");
  }
  std::unique_ptr<ProcessGroup> dev_;
  void* scratch_ = nullptr;
  size_t cap_ = 0;
};
#endif

// check's collectives on g (world group semantics) plus sub-groups by parity.
int check_all(ProcessGroup& g, int rank, int world_size) {
  std::vector<int> all(static_cast<size_t>(world_size));
  for (int i = 0; i < world_size; ++i) all[static_cast<size_t>(i)] = i;
  int checks = check_group(g, all, 0);
  checks += check_async(g, rank);
  if (world_size >= 3) {
    // Sub-groups by parity; each rank builds only the group it belongs to.
    std::vector<int> members;
    for (int r = rank % 2; r < world_size; r += 2) members.push_back(r);
    auto sub = g.new_group(members);
    checks += check_group(*sub, members, 11);
  }
  return checks;
}

int run_mode(const std::string& mode, char** argv, Distributed& d) {
  ProcessGroup& g = *d.group;
  std::vector<int> everyone(static_cast<size_t>(d.world_size));
  for (int i = 0; i < d.world_size; ++i) everyone[static_cast<size_t>(i)] = i;
  if (mode == "check") {
    int checks = check_all(g, d.rank, d.world_size);
    g.barrier();
    std::printf("rank %d: %d checks passed\n", d.rank, checks);
    return 0;
  }
  if (mode == "staged") {
    auto copier = std::make_shared<CountingHostCopier>();
    auto staged = make_host_staged_process_group(g.new_group(everyone), copier);
    int checks = check_all(*staged, d.rank, d.world_size);
    // A second round must find its staging buffers in the pool.
    const size_t allocations = copier->allocations;
    checks += check_all(*staged, d.rank, d.world_size);
    // The result reaches the device buffer only in wait() (the copy back): no device-side wait to offer.
    std::vector<float> one(1, 1.0f);
    auto work = staged->allreduce_async(one.data(), 1, DType::F32, ReduceOp::Sum);
    if (work->wait_on_stream(nullptr)) throw RuntimeError("staged: wait_on_stream claimed a device-side wait");
    work->wait();
    if (one[0] != static_cast<float>(d.world_size)) throw RuntimeError("staged: allreduce after wait_on_stream");
    ++checks;
    staged->barrier();
    std::printf("rank %d: %d staged checks passed; %zu bytes to host, %zu to device, %zu pinned allocations "
                "(%zu in the second round)\n",
                d.rank, checks, copier->to_host_bytes, copier->to_device_bytes, copier->allocations,
                copier->allocations - allocations);
    return 0;
  }
  if (mode == "staged_cuda") {
#ifdef ZT_HAVE_CUDA
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) throw RuntimeError("staged_cuda: no GPU visible");
    DeviceShim shim(make_host_staged_process_group(g.new_group(everyone), cuda::make_cuda_device_copier()));
    int checks = check_all(shim, d.rank, d.world_size);
    shim.barrier();
    std::printf("rank %d: %d checks passed on GPU buffers through %s\n", d.rank, checks,
                shim.backend_name().c_str());
    return 0;
#else
    throw RuntimeError("staged_cuda: built without CUDA");
#endif
  }
  if (mode == "sleep") {
    int who = std::atoi(argv[2]);
    if (d.rank == who) std::this_thread::sleep_for(std::chrono::duration<double>(std::atof(argv[3])));
    std::vector<float> x(1234, 1.0f);
    g.allreduce(x.data(), x.size(), DType::F32, ReduceOp::Sum);
    return 0;
  }
  if (mode == "throw") {
    g.barrier();
    if (d.rank == std::atoi(argv[2])) throw RuntimeError("deliberate failure on rank " + std::to_string(d.rank));
    std::vector<float> x(1000, 1.0f);
    for (int k = 0; k < 1000000; ++k) g.allreduce(x.data(), x.size(), DType::F32, ReduceOp::Max);
    return 0;
  }
  if (mode == "selfkill") {
    std::vector<float> x(1000, 1.0f);
    for (int k = 0; k < 1000000; ++k) {
      if (k == 20 && d.rank == std::atoi(argv[2])) std::raise(SIGKILL);
      g.allreduce(x.data(), x.size(), DType::F32, ReduceOp::Max);
    }
    return 0;
  }
  throw ConfigError("unknown mode '" + mode + "'");
}

int run(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "check";
  double timeout_s = std::getenv("ZT_TEST_TIMEOUT_S") ? std::atof(std::getenv("ZT_TEST_TIMEOUT_S")) : 30.0;
  auto d = init_distributed(CommBackend::Gloo, timeout_s);
  if (d.group->rank() != d.rank || d.group->size() != d.world_size)
    throw RuntimeError("group rank/size disagree with env");
  // The error is printed while this rank's connections are still open, as zerotrain's job does: closing them first
  // lets a peer fail on the closed connection and the launcher stop this rank before its own cause is out.
  return run_main("zt_comm_worker", [&] { return run_mode(mode, argv, d); });
}

}  // namespace

int main(int argc, char** argv) { return zt::run_main("zt_comm_worker", [&] { return run(argc, argv); }); }
