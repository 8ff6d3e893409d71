#pragma once
// Offline consolidation of a sharded zerotrain checkpoint into whole fp32 tensors (the zero_to_fp32 tool): reads the
// manifest, and for each parameter in turn pulls its pieces out of the owning ranks' fp32 master partitions with
// positioned reads, then streams it into Hugging Face GPT-2 safetensors. Peak memory is one tensor plus I/O buffers,
// whatever the checkpoint's size; no model, no config and no GPU are needed.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zt {

struct MergeOptions {
  std::string tag;                              // default: what <dir>/latest names, or dir itself if it is a tag
  uint64_t max_shard_bytes = 5000000000ull;     // like HF's max_shard_size
  bool verify = true;                           // check every shard's size and CRC-32 against the manifest first
  std::function<void(size_t done, size_t total)> on_tensor;  // progress
};

struct MergeReport {
  std::string tag_dir;
  int stage = 0;
  int world_size = 0;
  uint64_t num_params = 0;
  size_t num_tensors = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  std::vector<std::string> files;  // written, the index last when sharded
};

// Reads the manifest only: stage, world size, parameter count.
MergeReport inspect_checkpoint(const std::string& checkpoint_dir, const std::string& tag);

// output: a directory (model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json
// when over max_shard_bytes) or a file path ending in .safetensors (one file). The tied lm_head is not written
// (GPT-2 loaders tie it back to transformer.wte.weight).
MergeReport merge_checkpoint_to_fp32(const std::string& checkpoint_dir, const std::string& output,
                                     const MergeOptions& options);

// "5GB", "500MB", "10KiB", "123" (bytes) -> bytes; throws ConfigError.
uint64_t parse_byte_size(const std::string& text);

}  // namespace zt
