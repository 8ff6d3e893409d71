#pragma once
// A model's initial weights, read range by range from wherever they come from: the seed's generator
// (GPT2::init_weights), a model's own buffers, or a safetensors file (engine/runtime/model_io.h). The GPU path
// streams them to the device this way instead of holding a full host copy (8 bytes per parameter with gradients).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model/gpt2.h"

namespace zt {

class InitialWeights {
 public:
  explicit InitialWeights(const GPT2& layout);
  virtual ~InitialWeights() = default;
  InitialWeights(const InitialWeights&) = delete;
  InitialWeights& operator=(const InitialWeights&) = delete;

  size_t num_params() const { return n_; }
  // Elements [offset, offset + n) of the flat layout into out[0, n); the range must lie inside the layout.
  void read(size_t offset, size_t n, float* out) const;

 protected:
  // Elements [begin, begin + n) of parameter `index` of the layout.
  virtual void read_param(size_t index, size_t begin, size_t n, float* out) const = 0;
  const std::vector<ParamInfo>& params() const { return params_; }

 private:
  std::vector<ParamInfo> params_;
  size_t n_ = 0;
};

// GPT2::init_weights(seed)'s values, generated on request (bit for bit the same).
std::unique_ptr<InitialWeights> seeded_initial_weights(const GPT2& layout, uint64_t seed);
// The values in a model's own buffers at the time of each read (the model must outlive the result).
std::unique_ptr<InitialWeights> model_initial_weights(const GPT2& model);

}  // namespace zt
