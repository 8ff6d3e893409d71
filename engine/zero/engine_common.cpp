#include "engine/zero/engine_common.h"

#include "engine/base/error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace zt {

float clip_factor(double norm, double max_norm) {
  if (max_norm <= 0.0 || !std::isfinite(norm)) return 1.0f;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

std::vector<DecayRange> full_decay_ranges(const GPT2& model) {
  std::vector<DecayRange> r;
  for (const ParamInfo& p : model.params()) r.push_back({p.offset, p.offset + p.numel, p.weight_decay});
  std::sort(r.begin(), r.end(), [](const DecayRange& a, const DecayRange& b) { return a.begin < b.begin; });
  return r;
}

double global_norm_from_partitions(ProcessGroup& pg, double local_sum_squares) {
  // Sent as two floats (high and low part) so the sum keeps close to double precision.
  float parts[2] = {static_cast<float>(local_sum_squares), 0.0f};
  parts[1] = static_cast<float>(local_sum_squares - static_cast<double>(parts[0]));
  if (pg.size() > 1) pg.allreduce(parts, 2, DType::F32, ReduceOp::Sum);
  return std::sqrt(static_cast<double>(parts[0]) + static_cast<double>(parts[1]));
}

std::vector<std::string> checkpoint_state_names(Optimizer& opt) {
  std::vector<std::string> names{"master"};
  for (auto& [name, buf] : opt.state()) names.push_back(name);
  return names;
}

float* optimizer_state(Optimizer& opt, const std::string& name) {
  for (auto& [n, buf] : opt.state())
    if (n == name) return buf;
  throw RuntimeError("the optimizer has no state buffer '" + name + "' (a checkpoint of another optimizer?)");
}

bool finish_gradients(ProcessGroup& pg, LossScaler& scaler, ReducedGradients& grads, double clip, bool partitioned,
                      StepResult& r) {
  r.loss_scale = scaler.scale();
  if (scaler.enabled() && agree_on_overflow(pg, grads.has_nonfinite())) {
    r.skipped = true;
    r.grad_norm = std::numeric_limits<double>::infinity();
    scaler.update(true);
    return false;
  }
  if (scaler.enabled()) {
    grads.scale(1.0f / scaler.scale());
    scaler.update(false);
  }
  const double local = grads.sum_squares();
  r.grad_norm = partitioned ? global_norm_from_partitions(pg, local) : std::sqrt(local);
  const float f = clip_factor(r.grad_norm, clip);
  if (f != 1.0f) grads.scale(f);
  return true;
}

namespace {

class HostGradients : public ReducedGradients {
 public:
  HostGradients(float* grads, size_t n) : grads_(grads), n_(n) {}
  bool has_nonfinite() override { return zt::has_nonfinite(grads_, n_); }
  void scale(float factor) override { scale_inplace(grads_, n_, factor); }
  double sum_squares() override { return zt::sum_squares(grads_, n_); }

 private:
  float* grads_;
  size_t n_;
};

}  // namespace

bool finish_gradients(ProcessGroup& pg, LossScaler& scaler, float* grads, size_t n, double clip, bool partitioned,
                      StepResult& r) {
  HostGradients host(grads, n);
  return finish_gradients(pg, scaler, host, clip, partitioned, r);
}

}  // namespace zt
