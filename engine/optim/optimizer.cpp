// Adam / AdamW / SGD over a flat fp32 slice. Every element's update depends only on its own param, grad and state,
// so updating a buffer in slices is bit-identical to updating it whole (what ZeRO partitions rely on).
#include "engine/optim/optimizer.h"

#include <cmath>
#include <string>

#include "engine/base/error.h"

namespace zt {
namespace {

// The ranges, validated and completed into segments that cover [0, n): gaps are updated without decay.
std::vector<DecayRange> cover_with_segments(const std::vector<DecayRange>& ranges, size_t n) {
  std::vector<DecayRange> segments;
  size_t at = 0;
  for (size_t i = 0; i < ranges.size(); i++) {
    const DecayRange& r = ranges[i];
    if (r.begin > r.end || r.end > n || r.begin < at) {
      throw RuntimeError("optimizer: decay range " + std::to_string(i) + " [" + std::to_string(r.begin) + ", " +
                         std::to_string(r.end) + ") is out of order, overlapping or beyond the slice of " +
                         std::to_string(n) + " elements");
    }
    if (r.begin > at) segments.push_back({at, r.begin, false});
    if (r.end > r.begin) segments.push_back(r);
    at = r.end;
  }
  if (at < n) segments.push_back({at, n, false});
  return segments;
}

void check_step(int64_t step, const char* who) {
  if (step < 1) throw RuntimeError(std::string(who) + ": step counts from 1, got " + std::to_string(step));
}

// torch.optim.Adam / AdamW (single-tensor path) in float: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps). L2 mode first adds wd*p to g; decoupled mode first scales
// p by (1 - lr*wd).
void adam_update(float* p, const float* grad, float* m, float* v, size_t begin, size_t end, const AdamStepScalars& s) {
  float one_minus_beta1 = 1.0f - s.beta1;
  float one_minus_beta2 = 1.0f - s.beta2;
#pragma omp parallel for simd schedule(static) if (end - begin > 32768)
  for (size_t i = begin; i < end; i++) {
    float g = grad[i] + s.l2_decay * p[i];
    float param = p[i] * s.decoupled_factor;
    float mi = m[i] * s.beta1 + one_minus_beta1 * g;
    float vi = v[i] * s.beta2 + one_minus_beta2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    p[i] = param - s.step_size * (mi / denom);
  }
}

class AdamOptimizer : public Optimizer {
 public:
  AdamOptimizer(const OptimizerConfig& cfg, size_t n, bool decoupled)
      : cfg_(cfg), decoupled_(decoupled), exp_avg_(n, 0.0f), exp_avg_sq_(n, 0.0f) {}

  void step(float* params, const float* grads, const std::vector<DecayRange>& ranges, double lr,
            int64_t step) override {
    check_step(step, "adam");
    for (const DecayRange& seg : cover_with_segments(ranges, size())) {
      adam_update(params, grads, exp_avg_.data(), exp_avg_sq_.data(), seg.begin, seg.end,
                  adam_step_scalars(cfg_, decoupled_, lr, step, seg.decay));
    }
  }

  std::vector<std::pair<std::string, float*>> state() override {
    return {{"exp_avg", exp_avg_.data()}, {"exp_avg_sq", exp_avg_sq_.data()}};
  }
  size_t size() const override { return exp_avg_.size(); }

 private:
  OptimizerConfig cfg_;
  bool decoupled_;
  std::vector<float> exp_avg_, exp_avg_sq_;
};

// torch.optim.SGD with dampening 0, nesterov off: d = g + wd p; buf = momentum buf + d; p -= lr buf. A zero
// buffer makes the first step buf = d, exactly torch's clone on the first step.
void sgd_update(float* p, const float* grad, float* buf, size_t begin, size_t end, float lr, float momentum,
                float weight_decay) {
  if (momentum != 0.0f) {
#pragma omp parallel for simd schedule(static) if (end - begin > 32768)
    for (size_t i = begin; i < end; i++) {
      float d = grad[i] + weight_decay * p[i];
      float b = momentum * buf[i] + d;
      buf[i] = b;
      p[i] = p[i] - lr * b;
    }
  } else {
#pragma omp parallel for simd schedule(static) if (end - begin > 32768)
    for (size_t i = begin; i < end; i++) {
      float d = grad[i] + weight_decay * p[i];
      p[i] = p[i] - lr * d;
    }
  }
}

class SgdOptimizer : public Optimizer {
 public:
  SgdOptimizer(const OptimizerConfig& cfg, size_t n) : cfg_(cfg), momentum_buffer_(n, 0.0f) {}

  void step(float* params, const float* grads, const std::vector<DecayRange>& ranges, double lr,
            int64_t step) override {
    check_step(step, "sgd");
    for (const DecayRange& seg : cover_with_segments(ranges, size())) {
      float wd = seg.decay ? static_cast<float>(cfg_.weight_decay) : 0.0f;
      sgd_update(params, grads, momentum_buffer_.data(), seg.begin, seg.end, static_cast<float>(lr),
                 static_cast<float>(cfg_.momentum), wd);
    }
  }

  std::vector<std::pair<std::string, float*>> state() override {
    return {{"momentum_buffer", momentum_buffer_.data()}};
  }
  size_t size() const override { return momentum_buffer_.size(); }

 private:
  OptimizerConfig cfg_;
  std::vector<float> momentum_buffer_;
};

}  // namespace

AdamStepScalars adam_step_scalars(const OptimizerConfig& cfg, bool decoupled, double lr, int64_t step, bool decay) {
  check_step(step, "adam");
  AdamStepScalars s;
  s.beta1 = static_cast<float>(cfg.beta1);
  s.beta2 = static_cast<float>(cfg.beta2);
  s.eps = static_cast<float>(cfg.eps);
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(cfg.beta1, static_cast<double>(step))));
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(cfg.beta2, static_cast<double>(step))));
  if (decay && cfg.weight_decay != 0.0) {
    if (decoupled) {
      s.decoupled_factor = static_cast<float>(1.0 - lr * cfg.weight_decay);
    } else {
      s.l2_decay = static_cast<float>(cfg.weight_decay);
    }
  }
  return s;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& cfg, size_t n) {
  switch (cfg.type) {
    case OptimizerType::Adam:
      return std::make_unique<AdamOptimizer>(cfg, n, cfg.adam_w_mode);
    case OptimizerType::AdamW:
      return std::make_unique<AdamOptimizer>(cfg, n, true);
    case OptimizerType::SGD:
      return std::make_unique<SgdOptimizer>(cfg, n);
  }
  throw ConfigError("optimizer: unknown optimizer type");
}

double sum_squares(const float* x, size_t n) {
  // Fixed-size chunks summed in order make the result independent of the thread count.
  constexpr size_t kChunk = 8192;
  size_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(n_chunks, 0.0);
#pragma omp parallel for schedule(static) if (n_chunks > 4)
  for (size_t c = 0; c < n_chunks; c++) {
    size_t begin = c * kChunk, end = begin + kChunk < n ? begin + kChunk : n;
    double acc = 0.0;
    for (size_t i = begin; i < end; i++) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    partial[c] = acc;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void scale_inplace(float* x, size_t n, float factor) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) x[i] *= factor;
}

}  // namespace zt
