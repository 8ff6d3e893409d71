// Times GPT-2 forward + backward (one micro-batch, fp32, CPU) and prints tokens/s and ms/step.
// Usage: model_step_bench [--model gpt2-124M|gpt2-tiny] [--B 4] [--T 64] [--iters 5] [--warmup 1] [--ckpt]
// Threads: OMP_NUM_THREADS (OpenMP kernels) and OPENBLAS_NUM_THREADS (GEMMs).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/model/gpt2.h"

int main(int argc, char** argv) {
  std::string model = "gpt2-124M";
  int B = 4, T = 64, iters = 5, warmup = 1;
  bool ckpt = false;
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
    else if (a == "--warmup")
      warmup = std::stoi(next());
    else if (a == "--ckpt")
      ckpt = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
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
  zt::GPT2 m(d, ckpt);
  m.init_weights(1337);
  std::vector<int32_t> tokens((size_t)B * T + 1);
  uint64_t s = 42;
  for (auto& t : tokens) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t = (int32_t)((s >> 33) % (uint64_t)d.vocab_size);
  }
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
