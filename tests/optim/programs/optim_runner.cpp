// Runs the optimizer for the torch comparison in optim_test.py.
//   optim_runner TYPE LR BETA1 BETA2 EPS WEIGHT_DECAY ADAM_W_MODE MOMENTUM STEPS RANGES INPUT OUTPUT
// TYPE: adam | adamw | sgd. RANGES: "begin:end:decay,..." (decay 0/1). INPUT: float32 n params then STEPS*n grads.
// The lr of step k (1-based) is LR * (1 + 0.1 k), so a per-step lr is exercised. OUTPUT: the final n params.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "engine/optim/optimizer.h"

int main(int argc, char** argv) {
  if (argc != 13) {
    std::fprintf(stderr, "usage: optim_runner TYPE LR B1 B2 EPS WD ADAM_W_MODE MOMENTUM STEPS RANGES IN OUT\n");
    return 2;
  }
  zt::OptimizerConfig cfg;
  std::string type = argv[1];
  cfg.type = type == "adam" ? zt::OptimizerType::Adam : type == "adamw" ? zt::OptimizerType::AdamW : zt::OptimizerType::SGD;
  double lr = std::atof(argv[2]);
  cfg.lr = lr;
  cfg.beta1 = std::atof(argv[3]);
  cfg.beta2 = std::atof(argv[4]);
  cfg.eps = std::atof(argv[5]);
  cfg.weight_decay = std::atof(argv[6]);
  cfg.adam_w_mode = std::atoi(argv[7]) != 0;
  cfg.momentum = std::atof(argv[8]);
  int steps = std::atoi(argv[9]);
  std::vector<zt::DecayRange> ranges;
  std::stringstream ss(argv[10]);
  std::string item;
  while (std::getline(ss, item, ',')) {
    zt::DecayRange r;
    unsigned long long b = 0, e = 0;
    int d = 0;
    if (std::sscanf(item.c_str(), "%llu:%llu:%d", &b, &e, &d) != 3) return 2;
    r.begin = b;
    r.end = e;
    r.decay = d != 0;
    ranges.push_back(r);
  }
  FILE* in = std::fopen(argv[11], "rb");
  if (!in) return 1;
  std::fseek(in, 0, SEEK_END);
  size_t total = static_cast<size_t>(std::ftell(in)) / sizeof(float);
  std::fseek(in, 0, SEEK_SET);
  std::vector<float> data(total);
  if (std::fread(data.data(), sizeof(float), total, in) != total) return 1;
  std::fclose(in);
  size_t n = total / static_cast<size_t>(steps + 1);
  std::vector<float> params(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
  auto opt = zt::make_optimizer(cfg, n);
  for (int k = 1; k <= steps; k++) {
    opt->step(params.data(), data.data() + static_cast<size_t>(k) * n, ranges, lr * (1.0 + 0.1 * k), k);
  }
  FILE* out = std::fopen(argv[12], "wb");
  if (!out) return 1;
  std::fwrite(params.data(), sizeof(float), n, out);
  std::fclose(out);
  return 0;
}
