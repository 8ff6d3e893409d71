// libFuzzer entry: any byte string given to the config parser either parses or throws zt::Error; anything else
// (a crash, a sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first line, when it looks like one, is an override, so the fuzzer also reaches apply_override.
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  size_t nl = text.find('\n');
  if (nl != std::string::npos && nl > 0 && text[0] != '{' && text.find('=') < nl) {
    overrides.push_back(text.substr(0, nl));
    text = text.substr(nl + 1);
  }
  try {
    zt::Config cfg = zt::parse_config_text(text, "fuzz.json", overrides);
    zt::config_to_json(cfg).dump();
    for (int world_size : {1, 3}) {
      try {
        zt::resolve_batch(cfg, world_size);
      } catch (const zt::Error&) {
      }
      zt::estimate_model_state_bytes(zt::memory_estimate_input(cfg, world_size));
    }
  } catch (const zt::Error&) {
  }
  return 0;
}
