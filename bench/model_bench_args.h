#pragma once
// What the model-step benchmarks share: the command line (model preset, batch shape, iterations, flags), the
// preset's dims and a fixed pseudo-random token stream.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/model/gpt2.h"

struct ModelBenchArgs {
  std::string model = "gpt2-124M";
  int B = 4, T = 64, iters = 5, warmup = 1, cpu_iters = 2;
  bool ckpt = false, flash = false;
  std::string dtype = "fp32";  // the GPU model's storage type (cuda_model_step_bench): fp32, bf16 or fp16
};

// Parses the options; an unknown option or model exits with status 2 and a message.
inline ModelBenchArgs parse_model_bench_args(int argc, char** argv) {
  ModelBenchArgs a;
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--model")
      a.model = next();
    else if (arg == "--B")
      a.B = std::stoi(next());
    else if (arg == "--T")
      a.T = std::stoi(next());
    else if (arg == "--iters")
      a.iters = std::stoi(next());
    else if (arg == "--warmup")
      a.warmup = std::stoi(next());
    else if (arg == "--cpu-iters")
      a.cpu_iters = std::stoi(next());
    else if (arg == "--ckpt")
      a.ckpt = true;
    else if (arg == "--flash")
      a.flash = true;
    else if (arg == "--dtype")
      a.dtype = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      std::exit(2);
    }
  }
  if (a.dtype != "fp32" && a.dtype != "bf16" && a.dtype != "fp16") {
    std::fprintf(stderr, "unknown dtype %s (fp32, bf16, fp16)\n", a.dtype.c_str());
    std::exit(2);
  }
  if (a.model != "gpt2-124M" && a.model != "gpt2-tiny") {
    std::fprintf(stderr, "unknown model %s (gpt2-124M, gpt2-tiny)\n", a.model.c_str());
    std::exit(2);
  }
  return a;
}

inline zt::ModelDims model_bench_dims(const ModelBenchArgs& a) {
  if (a.model == "gpt2-tiny") return {2, 2, 64, 256, 64};
  return {12, 12, 768, 50257, 1024};
}

// B*T + 1 token ids (inputs and next-token targets), the same in every run.
inline std::vector<int32_t> model_bench_tokens(const ModelBenchArgs& a, const zt::ModelDims& d) {
  std::vector<int32_t> tokens((size_t)a.B * a.T + 1);
  uint64_t s = 42;
  for (auto& t : tokens) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t = (int32_t)((s >> 33) % (uint64_t)d.vocab_size);
  }
  return tokens;
}
