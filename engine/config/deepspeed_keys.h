#pragma once
// The parts of DeepSpeed's config schema that zerotrain accepts without acting on them, so a real DeepSpeed config
// is never rejected for a key DeepSpeed knows. Sections zerotrain interprets are read key by key by the parser.
#include <vector>

namespace zt {

// Top-level scalar keys DeepSpeed accepts that zerotrain does not implement (each present one is a warning).
const std::vector<const char*>& deepspeed_unimplemented_top_level_keys();

// Top-level sections (monitors, profilers, autotuning, compression, ...) accepted with any content and ignored
// (one warning each).
const std::vector<const char*>& deepspeed_ignored_sections();

}  // namespace zt
