// Times the GPU engine's offloaded optimizer step (engine/zero/cuda/host_offload_optimizer.h) over one partition of n
// fp32 elements: gradient to the host in chunks, CPU Adam per chunk, weights back, overlapped. Baselines measured in
// the same run: the same work without overlap (one whole download, one CPU Adam over the partition, one whole
// upload, all through the same pinned memory), and Adam on the device (the engine without offload). With --nvme DIR
// also the step with the optimizer state in NVMe swap files under DIR (offload_optimizer.device nvme, 4 buffer sets
// of --chunk elements: the sub-groups are the chunks), against the same NvmeOptimizerState step run serially between
// one whole download and one whole upload.
// Usage: cuda_offload_step_bench [--n 33554432] [--chunk 4194304] [--iters 5] [--nvme DIR]
// Exits 1 with a message when the build has no CUDA backend or no GPU is visible.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if ZT_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/zero/cuda/host_offload_optimizer.h"
#include "engine/zero/nvme_optimizer_state.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/grad_update.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  size_t n = size_t{32} << 20;
  size_t chunk = size_t{4} << 20;
  int iters = 5;
  std::string nvme;  // empty: no NVMe rows
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "cuda_offload_step_bench: %s needs a value\n", k.c_str());
      std::exit(2);
    }
    if (k == "--nvme") {
      a.nvme = argv[++i];
      continue;
    }
    const long long v = std::atoll(argv[++i]);
    if (v <= 0) {
      std::fprintf(stderr, "cuda_offload_step_bench: %s must be a positive integer, got %s\n", k.c_str(), argv[i]);
      std::exit(2);
    }
    if (k == "--n") {
      a.n = static_cast<size_t>(v);
    } else if (k == "--chunk") {
      a.chunk = static_cast<size_t>(v);
    } else if (k == "--iters") {
      a.iters = static_cast<int>(v);
    } else {
      std::fprintf(stderr, "cuda_offload_step_bench: unknown option %s (--n, --chunk, --iters, --nvme)\n",
                   k.c_str());
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
#if !ZT_HAVE_CUDA
  (void)args;
  std::fprintf(stderr, "cuda_offload_step_bench: this build has no CUDA backend (configure with nvcc, ZT_CUDA=ON)\n");
  return 1;
#else
  if (zt::cuda::visible_device_count() == 0) {
    std::fprintf(stderr, "cuda_offload_step_bench: no GPU visible (cudaGetDeviceCount reports none); nothing to do\n");
    return 1;
  }
  const size_t n = args.n;
  zt::Config cfg;
  cfg.optimizer.type = zt::OptimizerType::AdamW;
  cfg.optimizer.weight_decay = 0.1;
  cfg.zero.sub_group_size = static_cast<int64_t>(args.chunk);
  cfg.zero.offload_optimizer.pin_memory = true;
  const std::vector<zt::DecayRange> ranges = {{0, n, true}};
  std::vector<float> init(n);
  for (size_t i = 0; i < n; ++i) init[i] = 0.01f * static_cast<float>(i % 97);

  cudaStream_t stream = nullptr;
  ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  float *grads = nullptr, *params = nullptr, *m = nullptr, *v = nullptr;
  for (float** p : {&grads, &params, &m, &v}) {
    ZT_CUDA_CHECK(cudaMalloc(p, n * sizeof(float)));
    ZT_CUDA_CHECK(cudaMemset(*p, 0, n * sizeof(float)));
  }
  auto refill_grads = [&] {  // the step overwrites the gradient partition with weights; not timed
    ZT_CUDA_CHECK(cudaMemcpyAsync(grads, init.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
  };

  // Seconds of iters steps after one warm-up step; step(k) runs the k-th (1-based) on refilled gradients.
  auto timed = [&](const std::function<void(int64_t)>& step) {
    double s = 0;
    for (int it = 0; it <= args.iters; ++it) {
      refill_grads();
      const auto t0 = Clock::now();
      step(it + 1);
      ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (it > 0) s += seconds_since(t0);
    }
    return s;
  };
  // The engine's offloaded step (HostOffloadOptimizer) under config c.
  auto offloaded = [&](const zt::Config& c) {
    zt::HostOffloadOptimizer opt(c, n, ranges, init.data(), stream, /*rank=*/0);
    return timed([&](int64_t k) { opt.step(grads, 1e-3, k); });
  };
  // Without overlap: the gradient down whole into host[0, n), update(k) leaves the weights in host[n, 2n), up whole.
  auto serial = [&](float* host, const std::function<void(int64_t)>& update) {
    return timed([&](int64_t k) {
      ZT_CUDA_CHECK(cudaMemcpyAsync(host, grads, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
      ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
      update(k);
      ZT_CUDA_CHECK(cudaMemcpyAsync(grads, host + n, n * sizeof(float), cudaMemcpyHostToDevice, stream));
    });
  };
  const zt::offload::CpuAdamHyper hyper = zt::offload::cpu_adam_hyper(cfg.optimizer, 1e-3);

  // Offloaded and pipelined, as the engine runs it.
  const double pipelined_s = offloaded(cfg);
  // Offloaded without overlap: the same pinned buffers, whole-partition copies around one CPU Adam.
  double serial_s = 0;
  {
    float* host = nullptr;
    ZT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), 4 * n * sizeof(float), cudaHostAllocDefault));
    std::memcpy(host + n, init.data(), n * sizeof(float));
    std::memset(host + 2 * n, 0, 2 * n * sizeof(float));
    serial_s = serial(host, [&](int64_t k) {
      zt::offload::cpu_adam_step(host + n, host, host + 2 * n, host + 3 * n, n, hyper, k, ranges);
    });
    cudaFreeHost(host);
  }
  // Not offloaded: the Adam kernel over the partition on the device.
  const double device_s = timed([&](int64_t k) {
    zt::cuda::adam_update(params, grads, m, v, n, zt::adam_step_scalars(cfg.optimizer, true, 1e-3, k, true),
                          stream);
    ZT_CUDA_CHECK_LAUNCH("adam_update");
  });
  // The optimizer state on NVMe: pipelined as the engine runs it, and serially around the same NVMe step.
  double nvme_pipelined_s = 0, nvme_serial_s = 0;
  if (!args.nvme.empty()) {
    zt::Config ncfg = cfg;
    ncfg.zero.offload_optimizer.device = zt::OffloadDevice::Nvme;
    ncfg.zero.offload_optimizer.nvme_path = args.nvme;
    ncfg.zero.offload_optimizer.buffer_count = 4;
    nvme_pipelined_s = offloaded(ncfg);
    zt::NvmeOptimizerState state(ncfg, n, /*rank=*/0, init.data());
    float* host = nullptr;
    ZT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), 2 * n * sizeof(float), cudaHostAllocDefault));
    nvme_serial_s = serial(host, [&](int64_t k) {
      state.step(host, ranges, hyper, k, [&](size_t b, size_t len, const float* master) {
        std::memcpy(host + n + b, master, len * sizeof(float));
      });
    });
    cudaFreeHost(host);
  }
  for (float* p : {grads, params, m, v}) cudaFree(p);
  cudaStreamDestroy(stream);

  const double k = 1e3 / args.iters;
  std::printf("partition %zu fp32 elements, chunks of %zu, CPU Adam %s with %d threads, %d timed steps\n", n,
              std::min(args.chunk, zt::kMaxOffloadChunk), zt::offload::cpu_isa_name(zt::offload::cpu_adam_isa()),
              zt::offload::cpu_adam_threads(), args.iters);
  std::printf("| optimizer step | ms/step | vs serial offload |\n|---|---|---|\n");
  std::printf("| offloaded, chunks overlapped | %.2f | %.2fx |\n", pipelined_s * k, serial_s / pipelined_s);
  std::printf("| offloaded, serial (baseline) | %.2f | 1.00x |\n", serial_s * k);
  std::printf("| on the device (Adam kernel) | %.2f | %.2fx |\n", device_s * k, serial_s / device_s);
  if (!args.nvme.empty()) {
    std::printf("\noptimizer state on NVMe under %s (4 buffer sets of one chunk)\n", args.nvme.c_str());
    std::printf("| optimizer step | ms/step | vs serial NVMe offload |\n|---|---|---|\n");
    std::printf("| NVMe, chunks overlapped | %.2f | %.2fx |\n", nvme_pipelined_s * k, nvme_serial_s / nvme_pipelined_s);
    std::printf("| NVMe, serial copies (baseline) | %.2f | 1.00x |\n", nvme_serial_s * k);
  }
  return 0;
#endif
}
