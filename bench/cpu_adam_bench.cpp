// CPU Adam throughput: parameters per second of offload's vectorised Adam (each ISA, one thread and all), a plain
// scalar loop, and engine/optim's reference optimizer, against the memory-bandwidth bound: an update reads p, g, m, v
// and writes p, m, v = 28 bytes per parameter, over the memcpy bandwidth measured in the same run.
//   cpu_adam_bench [n_params (default 16M)] [iterations (default 10)]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine/optim/optimizer.h"
#include "offload/cpu_adam.h"

namespace {

double best_seconds(int iters, const std::function<void(int)>& body) {
  double best = 1e30;
  body(0);  // warm-up: page faults, thread start
  for (int i = 1; i <= iters; i++) {
    auto t0 = std::chrono::steady_clock::now();
    body(i);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// The textbook loop, as someone would write it without thinking about vectors or threads.
void plain_adam(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps,
                int step) {
  float bc1 = 1.0f - std::pow(b1, static_cast<float>(step));
  float bc2 = 1.0f - std::pow(b2, static_cast<float>(step));
  for (size_t i = 0; i < n; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
  }
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : size_t{16} << 20;
  int iters = argc > 2 ? std::atoi(argv[2]) : 10;
  std::vector<float> p(n, 0.5f), g(n), m(n, 0.0f), v(n, 0.0f);
  for (size_t i = 0; i < n; i++) g[i] = std::sin(static_cast<float>(i)) * 0.01f;
  int threads = zt::offload::cpu_adam_threads();

  // memcpy bandwidth with as many threads as the update uses: a copy reads and writes, 2 x bytes moved.
  std::vector<float> src(n * 2, 1.0f), dst(n * 2, 0.0f);
  auto copy_with = [&](int t) {
    size_t per = src.size() / static_cast<size_t>(t);
    std::vector<std::thread> pool;
    for (int k = 1; k < t; k++) {
      size_t b = per * static_cast<size_t>(k), e = k + 1 == t ? src.size() : b + per;
      pool.emplace_back([&, b, e] { std::memcpy(dst.data() + b, src.data() + b, (e - b) * sizeof(float)); });
    }
    std::memcpy(dst.data(), src.data(), per * sizeof(float));
    for (auto& th : pool) th.join();
  };
  double bandwidth = 0;
  for (int t : {1, threads}) {
    double copy_s = best_seconds(iters, [&](int) { copy_with(t); });
    bandwidth = std::max(bandwidth, 2.0 * src.size() * sizeof(float) / copy_s);
  }
  double bound = bandwidth / 28.0;
  std::printf("n = %zu parameters, %d threads (OMP_NUM_THREADS or hardware), dispatch picks %s, load %s\n", n,
              threads, zt::offload::cpu_isa_name(zt::offload::cpu_adam_isa()), [] {
                static char buf[64] = "?";
                if (FILE* f = std::fopen("/proc/loadavg", "r")) {
                  if (std::fgets(buf, sizeof buf, f) == nullptr) buf[0] = 0;
                  std::fclose(f);
                  buf[std::strcspn(buf, "\n")] = 0;
                }
                return buf;
              }());
  std::printf("memcpy bandwidth (best of 1 and all threads): %.2f GB/s -> bound %.1f M params/s at 28 B/param\n\n",
              bandwidth / 1e9,
              bound / 1e6);
  std::printf("| implementation | M params/s | of the memcpy bound |\n| --- | --- | --- |\n");
  auto row = [&](const std::string& name, double seconds) {
    double rate = static_cast<double>(n) / seconds;
    std::printf("| %s | %.1f | %.0f%% |\n", name.c_str(), rate / 1e6, rate / bound * 100);
  };

  // The same 28 bytes of traffic per parameter without the math: what this memory system really allows for this
  // access pattern (glibc's memcpy can be a poor bound: on some AMD VMs it is slower than plain loads and stores).
  double traffic_s = best_seconds(iters, [&](int) {
    size_t per = n / static_cast<size_t>(threads);
    auto body = [&](size_t b, size_t e) {
      for (size_t i = b; i < e; i++) {
        p[i] += g[i];
        m[i] *= 0.5f;
        v[i] *= 0.5f;
      }
    };
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; k++) {
      size_t b = per * static_cast<size_t>(k), e = k + 1 == threads ? n : b + per;
      pool.emplace_back(body, b, e);
    }
    body(0, per);
    for (auto& th : pool) th.join();
  });
  std::printf("| same traffic, no math (p+=g, m*=c, v*=c; %d threads) = streaming bound | %.1f | %.0f%% |\n",
              threads, n / traffic_s / 1e6, n / traffic_s / bound * 100);
  std::fill(m.begin(), m.end(), 0.0f);
  std::fill(v.begin(), v.end(), 0.0f);

  zt::offload::CpuAdamHyper h;
  h.weight_decay = 0.01;
  row("plain scalar loop (1 thread)", best_seconds(iters, [&](int s) {
        plain_adam(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, s + 1);
      }));
  zt::OptimizerConfig cfg;
  cfg.weight_decay = 0.01;
  auto reference = zt::make_optimizer(cfg, n);
  std::vector<zt::DecayRange> all{{0, n, true}};
  row("engine/optim make_optimizer (OpenMP)",
      best_seconds(iters, [&](int s) { reference->step(p.data(), g.data(), all, 1e-3, s + 1); }));
  for (zt::offload::CpuIsa isa :
       {zt::offload::CpuIsa::Scalar, zt::offload::CpuIsa::Avx2, zt::offload::CpuIsa::Avx512}) {
    if (!zt::offload::cpu_supports(isa)) continue;
    for (int t : {1, threads}) {
      if (t == 1 && threads == 1 && isa != zt::offload::CpuIsa::Scalar) continue;
      std::string name = std::string("offload cpu_adam ") + zt::offload::cpu_isa_name(isa) + ", " +
                         std::to_string(t) + " thread" + (t > 1 ? "s" : "");
      row(name, best_seconds(iters, [&](int s) {
            zt::offload::cpu_adam_step_with(isa, t, p.data(), g.data(), m.data(), v.data(), n, h, s + 1, true);
          }));
      if (t == threads) break;
    }
  }
  return 0;
}
