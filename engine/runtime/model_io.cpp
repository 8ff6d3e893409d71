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


// The file's tensor of each parameter, checked (present, shape) when built; read on request.
class FileWeights final : public InitialWeights {
 public:
  FileWeights(const GPT2& layout, const std::string& path) : InitialWeights(layout), set_(path) {
    for (const ParamInfo& p : layout.params()) {
      const std::string name = find_name(set_, p.name);
      if (name.empty()) throw RuntimeError("model.init_from '" + path + "': tensor '" + p.name + "' is missing");
      const StTensorInfo& info = set_.info(name);
      if (info.shape != p.shape)
        throw RuntimeError("model.init_from '" + path + "': tensor '" + name + "' has shape " +
                           shape_str(info.shape) + ", the model expects " + shape_str(p.shape));
      names_.push_back(name);
    }
    for (const std::string& n : set_.names()) {
      if (n == "lm_head.weight" || n.find(".attn.bias") != std::string::npos ||
          n.find(".attn.masked_bias") != std::string::npos)
        continue;  // tied head; HF's causal-mask buffers
      bool known = false;
      for (const ParamInfo& p : layout.params()) known = known || n == p.name || "transformer." + n == p.name;
      if (!known)
        spdlog::warn("model.init_from '{}': tensor '{}' is not a parameter of this model; ignored", path, n);
    }
    spdlog::info("loading {} tensors from {}", names_.size(), path);
  }

 protected:
  void read_param(size_t index, size_t begin, size_t n, float* out) const override {
    set_.read_float_range(names_[index], begin, n, out);
  }

 private:
  SafetensorsSet set_;
  std::vector<std::string> names_;  // per parameter of the layout
};

}  // namespace

std::unique_ptr<InitialWeights> file_initial_weights(const GPT2& layout, const std::string& path) {
  return std::make_unique<FileWeights>(layout, path);
}

void load_model_weights(GPT2& model, const std::string& path) {
  float* flat = model.param_data();
  if (!flat) throw RuntimeError("load_model_weights: the model's buffers were already partitioned");
  file_initial_weights(model, path)->read(0, model.num_params(), flat);
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
