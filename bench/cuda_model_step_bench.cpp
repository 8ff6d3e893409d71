// Times GPT-2 forward + backward (one micro-batch, fp32) on the GPU (engine/model/cuda) and, as the baseline in the
// same run, on the CPU (engine/model), and prints tokens/s of both and the ratio.
// Usage: cuda_model_step_bench [--model gpt2-124M|gpt2-tiny] [--B 4] [--T 64] [--iters 10] [--cpu-iters 2]
//                              [--flash]
// Exits 1 with a message when the build has no CUDA backend or no GPU is visible.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

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
  std::string model = "gpt2-124M";
  int B = 4, T = 64, iters = 10, cpu_iters = 2;
  bool flash = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--model")
      model = next();
    else if (a == "--B")
      B = std::stoi(next());
    else if (a == "--T")
      T = std::stoi(next());
    else if (a == "--iters")
      iters = std::stoi(next());
    else if (a == "--cpu-iters")
      cpu_iters = std::stoi(next());
    else if (a == "--flash")
      flash = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (zt::cuda::visible_device_count() == 0) {
    std::fprintf(stderr, "cuda_model_step_bench: no GPU visible (cudaGetDeviceCount reports none); nothing to time\n");
    return 1;
  }
  zt::ModelDims d;
  if (model == "gpt2-124M")
    d = {12, 12, 768, 50257, 1024};
  else if (model == "gpt2-tiny")
    d = {2, 2, 64, 256, 64};
  else {
    std::fprintf(stderr, "unknown model %s (gpt2-124M, gpt2-tiny)\n", model.c_str());
    return 2;
  }
  zt::GPT2 cpu(d, false);
  cpu.init_weights(1337);
  std::vector<int32_t> tokens((size_t)B * T + 1);
  uint64_t s = 42;
  for (auto& t : tokens) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t = (int32_t)((s >> 33) % (uint64_t)d.vocab_size);
  }
  zt::cuda::GPT2Cuda gpu(d, cpu.params(), flash);
  gpu.upload_params(cpu.param_data());
  float gpu_loss = 0, cpu_loss = 0;
  const double gpu_s = time_steps(gpu, tokens, B, T, iters, gpu_loss);
  const double cpu_s = time_steps(cpu, tokens, B, T, cpu_iters, cpu_loss);
  const double tokens_per_step = (double)B * T;
  std::printf("model %s B=%d T=%d attention=%s\n", model.c_str(), B, T, flash ? "flash" : "reference");
  std::printf("| device | ms/step | tokens/s | loss |\n|---|---|---|---|\n");
  std::printf("| GPU fp32 | %.2f | %.0f | %.4f |\n", gpu_s * 1e3, tokens_per_step / gpu_s, gpu_loss);
  std::printf("| CPU fp32 (baseline) | %.2f | %.0f | %.4f |\n", cpu_s * 1e3, tokens_per_step / cpu_s, cpu_loss);
  std::printf("GPU / CPU: %.1fx\n", cpu_s / gpu_s);
  return 0;
#endif
}
