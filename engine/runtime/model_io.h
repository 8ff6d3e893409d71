#pragma once
// Model weights in and out of Hugging Face GPT-2 safetensors.
#include <string>
#include <vector>

#include "engine/model/gpt2.h"
#include "engine/model/initial_weights.h"

namespace zt {

// Loads model.init_from (a .safetensors file, an index json, or a directory with either) into the model's own
// buffers. Every parameter must be present with its HF shape (names with or without the "transformer." prefix);
// F32/BF16/F16 are converted. A missing lm_head.weight is fine (tied). Errors name the tensor and the file.
void load_model_weights(GPT2& model, const std::string& path);
// The same weights, checked the same way when called, read later range by range (for a layout without buffers).
std::unique_ptr<InitialWeights> file_initial_weights(const GPT2& layout, const std::string& path);

// Writes the full flat parameters (model.num_params() floats, the model's layout) as HF-named F32 safetensors.
void save_model_weights(const GPT2& model, const float* flat_params, const std::string& path);

}  // namespace zt
