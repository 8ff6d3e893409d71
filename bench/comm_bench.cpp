// Collective bandwidth, nccl-tests style: for each message size, the time per operation, algbw = size / time and
// busbw = algbw * factor (allreduce 2(n-1)/n, reduce-scatter and allgather (n-1)/n), which is comparable with the
// link bandwidth whatever n is. "size" is the full buffer: the allreduce buffer, the reduce-scatter input, the
// allgather output. A plain memcpy bandwidth measured in the same run gives a ceiling for one node.
//   comm_bench [--nproc N] [--min-bytes B] [--max-bytes B] [--backend gloo|nccl|auto] [--device cpu|cuda]
// --device cuda (implied by --backend nccl) puts the buffers in GPU memory: NCCL, or Gloo with pinned host staging.
// Without RANK in the environment it launches N copies of itself (default 2) through launch_workers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/comm/distributed.h"
#include "launcher/launcher.h"

#ifdef ZT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using namespace zt;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double memcpy_gbps(size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  std::memcpy(b.data(), a.data(), bytes);  // fault the pages in
  int iters = 5;
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) std::memcpy((i % 2 ? a : b).data(), (i % 2 ? b : a).data(), bytes);
  return static_cast<double>(bytes) * iters / seconds_since(t0) / 1e9;
}

std::string human(size_t b) {
  char s[32];
  if (b >= (1u << 20)) std::snprintf(s, sizeof(s), "%zu MiB", b >> 20);
  else std::snprintf(s, sizeof(s), "%zu KiB", b >> 10);
  return s;
}

// The two buffers of the benchmark, in host or GPU memory.
struct Buffers {
  float* buf = nullptr;
  float* out = nullptr;
  Device where = Device::Cpu;
  std::vector<float> host_buf, host_out;
  Buffers(size_t floats, Device d) : where(d) {
    if (d == Device::Cpu) {
      host_buf.assign(floats, 1.0f);
      host_out.assign(floats, 0.0f);
      buf = host_buf.data();
      out = host_out.data();
      return;
    }
#ifdef ZT_HAVE_CUDA
    if (cudaMalloc(&buf, floats * 4) != cudaSuccess || cudaMalloc(&out, floats * 4) != cudaSuccess)
      throw RuntimeError("comm_bench: cudaMalloc of 2 x " + std::to_string(floats * 4) + " bytes failed");
    cudaMemset(buf, 0, floats * 4);
#else
    throw RuntimeError("comm_bench: --device cuda needs a CUDA build");
#endif
  }
  ~Buffers() {
#ifdef ZT_HAVE_CUDA
    if (where == Device::Cuda) {
      cudaFree(buf);
      cudaFree(out);
    }
#endif
  }
};

int worker(size_t min_bytes, size_t max_bytes, CommBackend backend, Device device) {
  auto d = init_distributed(backend, 300.0, device);
  ProcessGroup& g = *d.group;
  const int n = g.size();
  const size_t n_sz = static_cast<size_t>(n);
  if (d.rank == 0) {
    std::printf("# comm_bench: %d ranks, backend %s, %s buffers, f32; memcpy bandwidth %.2f GB/s (256 MiB, one "
                "thread)\n",
                n, g.backend_name().c_str(), device == Device::Cpu ? "host" : "GPU", memcpy_gbps(256u << 20));
    std::printf("# %-10s %-15s %10s %12s %12s\n", "size", "op", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
  }
  Buffers b(max_bytes / 4, device);
  struct Op {
    const char* name;
    double factor;
  };
  const Op ops[] = {{"allreduce", 2.0 * (n - 1) / n}, {"reduce_scatter", double(n - 1) / n},
                    {"allgather", double(n - 1) / n}};
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    size_t total = bytes / 4, chunk = total / n_sz;
    for (const Op& op : ops) {
      auto run_once = [&] {
        if (op.name[6] == 'd' && op.name[0] == 'a') g.allreduce(b.buf, total, DType::F32, ReduceOp::Sum);
        else if (op.name[0] == 'r') g.reduce_scatter(b.buf, b.out, chunk, DType::F32, ReduceOp::Sum);
        else g.allgather(b.buf, b.out, chunk, DType::F32);
      };
      int iters = static_cast<int>(std::clamp<size_t>((size_t{1} << 30) / bytes, 3, 50));
      run_once();
      g.barrier();
      auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) run_once();
      g.barrier();
      double t = seconds_since(t0) / iters;
      double algbw = static_cast<double>(bytes) / t / 1e9;
      if (d.rank == 0)
        std::printf("  %-10s %-15s %10.1f %12.3f %12.3f\n", human(bytes).c_str(), op.name, t * 1e6, algbw,
                    algbw * op.factor);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int nproc = 2;
    size_t min_bytes = 4 << 10, max_bytes = 256u << 20;
    CommBackend backend = CommBackend::Gloo;
    Device device = Device::Cpu;
    for (int i = 1; i + 1 < argc; i += 2) {
      std::string a = argv[i], v = argv[i + 1];
      if (a == "--nproc") nproc = std::stoi(v);
      else if (a == "--min-bytes") min_bytes = std::stoull(v);
      else if (a == "--max-bytes") max_bytes = std::stoull(v);
      else if (a == "--backend") backend = v == "nccl" ? CommBackend::Nccl : v == "auto" ? CommBackend::Auto : CommBackend::Gloo;
      else if (a == "--device") device = v == "cuda" ? Device::Cuda : Device::Cpu;
      else throw ConfigError("unknown option " + a);
    }
    if (backend == CommBackend::Nccl) device = Device::Cuda;
    if (!read_worker_env()) {
      LaunchOptions o;
      o.nproc_per_node = nproc;
      o.master_port = 29500 + static_cast<int>(::getpid() % 1000);
      std::vector<std::string> args{self_executable()};
      for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
      return launch_workers(o, args);
    }
    return worker(min_bytes, max_bytes, backend, device);
  } catch (const Error& e) {
    std::fprintf(stderr, "comm_bench: error: %s\n", e.what());
    return e.exit_code();
  }
}
