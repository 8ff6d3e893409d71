#include "engine/runtime/model_io.h"

#include <filesystem>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/checkpoint/safetensors.h"

namespace zt {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// HF's GPT2Model files name tensors without the "transformer." prefix that GPT2LMHeadModel uses.
std::string find_name(const SafetensorsSet& set, const std::string& name) {
  if (set.contains(name)) return name;
  const std::string prefix = "transformer.";
  if (name.rfind(prefix, 0) == 0 && set.contains(name.substr(prefix.size()))) return name.substr(prefix.size());
  return "";
}

}  // namespace

void load_model_weights(GPT2& model, const std::string& path) {
  SafetensorsSet set(path);
  float* flat = model.param_data();
  if (!flat) throw RuntimeError("load_model_weights: the model's buffers were already partitioned");
  size_t used = 0;
  for (const ParamInfo& p : model.params()) {
    const std::string name = find_name(set, p.name);
    if (name.empty()) throw RuntimeError("model.init_from '" + path + "': tensor '" + p.name + "' is missing");
    const StTensorInfo& info = set.info(name);
    if (info.shape != p.shape)
      throw RuntimeError("model.init_from '" + path + "': tensor '" + name + "' has shape " + shape_str(info.shape) +
                         ", the model expects " + shape_str(p.shape));
    set.read_float(name, flat + p.offset, p.numel);
    ++used;
  }
  for (const std::string& n : set.names()) {
    if (n == "lm_head.weight" || n.find(".attn.bias") != std::string::npos ||
        n.find(".attn.masked_bias") != std::string::npos)
      continue;  // tied head; HF's causal-mask buffers
    bool known = false;
    for (const ParamInfo& p : model.params()) known = known || n == p.name || "transformer." + n == p.name;
    if (!known) spdlog::warn("model.init_from '{}': tensor '{}' is not a parameter of this model; ignored", path, n);
  }
  spdlog::info("loaded {} tensors from {}", used, path);
}

void save_model_weights(const GPT2& model, const float* flat_params, const std::string& path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::vector<StTensorRef> refs;
  for (const ParamInfo& p : model.params()) refs.push_back({p.name, StDtype::F32, p.shape, flat_params + p.offset});
  // Written next to the target and renamed, so a crash never leaves a half-written file under the final name.
  const std::string tmp = path + ".tmp";
  write_safetensors(tmp, refs, {{"format", "pt"}});
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw RuntimeError("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

}  // namespace zt
