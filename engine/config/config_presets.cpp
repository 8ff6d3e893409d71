// GPT-2 presets. They live in engine/config (not engine/model) so that cfg.model carries final dims after parsing
// and the config module depends on no model code.
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

namespace {
struct Preset {
  const char* name;
  int n_layer, n_head, n_embd, vocab_size, block_size;
};
// gpt2-tiny is byte-level so it trains on the embedded corpus; the others are OpenAI's GPT-2 sizes.
constexpr Preset kPresets[] = {
    {"gpt2-tiny", 2, 2, 64, 256, 64},        {"gpt2-124M", 12, 12, 768, 50257, 1024},
    {"gpt2-350M", 24, 16, 1024, 50257, 1024}, {"gpt2-774M", 36, 20, 1280, 50257, 1024},
    {"gpt2-1558M", 48, 25, 1600, 50257, 1024},
};
}  // namespace

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& p : kPresets) n.push_back(p.name);
    return n;
  }();
  return names;
}

void apply_model_preset(ModelConfig& cfg) {
  if (cfg.preset.empty()) return;
  for (const auto& p : kPresets) {
    if (cfg.preset == p.name) {
      cfg.n_layer = p.n_layer;
      cfg.n_head = p.n_head;
      cfg.n_embd = p.n_embd;
      cfg.vocab_size = p.vocab_size;
      cfg.block_size = p.block_size;
      return;
    }
  }
  std::string known;
  for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw ConfigError("model.preset: unknown preset \"" + cfg.preset + "\"; expected one of " + known);
}

}  // namespace zt
