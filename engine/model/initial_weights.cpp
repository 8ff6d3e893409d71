#include "engine/model/initial_weights.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/base/error.h"

namespace zt {

InitialWeights::InitialWeights(const GPT2& layout) : params_(layout.params()), n_(layout.num_params()) {}

void InitialWeights::read(size_t offset, size_t n, float* out) const {
  if (offset > n_ || n > n_ - offset)
    throw RuntimeError("InitialWeights::read: [" + std::to_string(offset) + ", " + std::to_string(offset + n) +
                       ") is outside the model's " + std::to_string(n_) + " parameters");
  const size_t end = offset + n;
  // The first parameter that ends after offset; parameters are contiguous in offset order.
  auto it = std::upper_bound(params_.begin(), params_.end(), offset,
                             [](size_t at, const ParamInfo& p) { return at < p.offset + p.numel; });
  for (; it != params_.end() && it->offset < end; ++it) {
    const size_t b = std::max(offset, it->offset), e = std::min(end, it->offset + it->numel);
    read_param(static_cast<size_t>(it - params_.begin()), b - it->offset, e - b, out + (b - offset));
  }
}

namespace {

class SeededWeights final : public InitialWeights {
 public:
  SeededWeights(const GPT2& layout, uint64_t seed)
      : InitialWeights(layout), n_layer_(layout.dims().n_layer), seed_(seed) {}

 protected:
  void read_param(size_t index, size_t begin, size_t n, float* out) const override {
    init_param_values(params()[index], index, n_layer_, seed_, begin, n, out);
  }

 private:
  int n_layer_;
  uint64_t seed_;
};

class ModelWeights final : public InitialWeights {
 public:
  explicit ModelWeights(const GPT2& model) : InitialWeights(model), model_(model) {}

 protected:
  void read_param(size_t index, size_t begin, size_t n, float* out) const override {
    const float* flat = model_.param_data();
    if (!flat) throw RuntimeError("model_initial_weights: the model has no own buffers (a layout, or partitioned)");
    std::memcpy(out, flat + params()[index].offset + begin, n * sizeof(float));
  }

 private:
  const GPT2& model_;
};

}  // namespace

std::unique_ptr<InitialWeights> seeded_initial_weights(const GPT2& layout, uint64_t seed) {
  return std::make_unique<SeededWeights>(layout, seed);
}

std::unique_ptr<InitialWeights> model_initial_weights(const GPT2& model) {
  return std::make_unique<ModelWeights>(model);
}

}  // namespace zt
