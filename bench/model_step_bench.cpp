// Times GPT-2 forward + backward (one micro-batch, fp32, CPU) and prints tokens/s and ms/step.
// Usage: model_step_bench [--model gpt2-124M|gpt2-tiny] [--B 4] [--T 64] [--iters 5] [--warmup 1] [--ckpt]
// Threads: OMP_NUM_THREADS (OpenMP kernels) and OPENBLAS_NUM_THREADS (GEMMs).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/model_bench_args.h"
#include "engine/model/gpt2.h"

int main(int argc, char** argv) {
  const ModelBenchArgs args = parse_model_bench_args(argc, argv);
  if (args.dtype != "fp32") {
    std::fprintf(stderr, "model_step_bench: the CPU model computes in fp32 only (--dtype is for the GPU bench)\n");
    return 2;
  }
  const std::string& model = args.model;
  const int B = args.B, T = args.T, iters = args.iters, warmup = args.warmup;
  const bool ckpt = args.ckpt;
  const zt::ModelDims d = model_bench_dims(args);
  zt::GPT2 m(d, ckpt);
  m.init_weights(1337);
  const std::vector<int32_t> tokens = model_bench_tokens(args, d);
  double total_ms = 0, fwd_ms = 0;
  float loss = 0;
  for (int it = 0; it < warmup + iters; it++) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = m.forward(tokens.data(), tokens.data() + 1, B, T);
    const auto t1 = std::chrono::steady_clock::now();
    m.backward();
    const auto t2 = std::chrono::steady_clock::now();
    if (it >= warmup) {
      fwd_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
      total_ms += std::chrono::duration<double, std::milli>(t2 - t0).count();
    }
  }
  const double ms = total_ms / iters;
  std::printf("%s B=%d T=%d ckpt=%d: %.1f ms/step (forward %.1f ms), %.0f tokens/s, loss %.4f, activations %.1f MiB\n",
              model.c_str(), B, T, ckpt ? 1 : 0, ms, fwd_ms / iters, B * T / (ms / 1000.0), loss,
              m.activation_bytes() / 1048576.0);
  return 0;
}
