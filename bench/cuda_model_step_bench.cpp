// Times GPT-2 forward + backward (one micro-batch) on the GPU (engine/model/cuda, in fp32, bf16 or fp16 storage) and,
// as the baseline in the same run, on the CPU (engine/model, fp32), and prints tokens/s of both and the ratio; also the
// GPU model with activation checkpointing (its recompute's cost against the GPU row, and the activation memory saved).
// Usage: cuda_model_step_bench [--model gpt2-124M|gpt2-tiny] [--B 4] [--T 64] [--iters 5] [--cpu-iters 2] [--flash]
//                              [--dtype fp32|bf16|fp16]
// Exits 1 with a message when the build has no CUDA backend or no GPU is visible.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/model_bench_args.h"
#include "engine/model/gpt2.h"
#if ZT_HAVE_CUDA
#include "engine/model/cuda/gpt2_cuda.h"
#include "kernels/cuda/device_info.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Mean seconds per forward + backward over iters, after one warm-up step.
template <typename Model>
double time_steps(Model& m, const std::vector<int32_t>& tokens, int B, int T, int iters, float& loss) {
  loss = m.forward(tokens.data(), tokens.data() + 1, B, T);
  m.backward();
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; i++) {
    loss = m.forward(tokens.data(), tokens.data() + 1, B, T);
    m.backward();
  }
  if constexpr (requires { m.synchronize(); }) m.synchronize();
  return seconds_since(t0) / iters;
}

}  // namespace

int main(int argc, char** argv) {
#if !ZT_HAVE_CUDA
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "cuda_model_step_bench: this build has no CUDA backend (configure with nvcc, ZT_CUDA=ON)\n");
  return 1;
#else
  const ModelBenchArgs args = parse_model_bench_args(argc, argv);
  if (zt::cuda::visible_device_count() == 0) {
    std::fprintf(stderr, "cuda_model_step_bench: no GPU visible (cudaGetDeviceCount reports none); nothing to time\n");
    return 1;
  }
  const zt::ModelDims d = model_bench_dims(args);
  const int B = args.B, T = args.T;
  zt::GPT2 cpu(d, false);
  cpu.init_weights(1337);
  const std::vector<int32_t> tokens = model_bench_tokens(args, d);
  const zt::cuda::Storage storage = args.dtype == "bf16"   ? zt::cuda::Storage::BF16
                                    : args.dtype == "fp16" ? zt::cuda::Storage::F16
                                                           : zt::cuda::Storage::F32;
  zt::cuda::GPT2Cuda gpu(d, cpu.params(), args.flash, storage);
  gpu.upload_params(cpu.param_data());
  float gpu_loss = 0, cpu_loss = 0, ckpt_loss = 0;
  const double gpu_s = time_steps(gpu, tokens, B, T, args.iters, gpu_loss);
  double ckpt_s = 0;
  size_t ckpt_bytes = 0;
  {
    zt::cuda::GPT2Cuda ckpt(d, cpu.params(), args.flash, storage, /*own_buffers=*/true,
                            /*activation_checkpointing=*/true);
    ckpt.upload_params(cpu.param_data());
    ckpt_s = time_steps(ckpt, tokens, B, T, args.iters, ckpt_loss);
    ckpt_bytes = ckpt.activation_bytes();
  }
  const double cpu_s = time_steps(cpu, tokens, B, T, args.cpu_iters, cpu_loss);
  const double tokens_per_step = (double)B * T, mib = 1024.0 * 1024.0;
  std::printf("model %s B=%d T=%d attention=%s\n", args.model.c_str(), B, T, args.flash ? "flash" : "reference");
  std::printf("| device | ms/step | tokens/s | loss | activations MiB |\n|---|---|---|---|---|\n");
  std::printf("| GPU %s | %.2f | %.0f | %.4f | %.1f |\n", zt::cuda::storage_name(storage), gpu_s * 1e3,
              tokens_per_step / gpu_s, gpu_loss, gpu.activation_bytes() / mib);
  std::printf("| GPU %s, activation checkpointing | %.2f | %.0f | %.4f | %.1f |\n", zt::cuda::storage_name(storage),
              ckpt_s * 1e3, tokens_per_step / ckpt_s, ckpt_loss, ckpt_bytes / mib);
  std::printf("| CPU fp32 (baseline) | %.2f | %.0f | %.4f | %.1f |\n", cpu_s * 1e3, tokens_per_step / cpu_s, cpu_loss,
              cpu.activation_bytes() / mib);
  std::printf("GPU / CPU: %.1fx; checkpointing costs %.0f%% more time for %.0f%% of the activations\n", cpu_s / gpu_s,
              (ckpt_s / gpu_s - 1.0) * 100.0, 100.0 * (double)ckpt_bytes / (double)gpu.activation_bytes());
  return 0;
#endif
}
