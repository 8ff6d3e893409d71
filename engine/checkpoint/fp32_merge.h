#pragma once
// Offline consolidation of a sharded zerotrain checkpoint into whole fp32 tensors (the zero_to_fp32 tool): reads the
// manifest, then makes one sequential pass over each rank's shard file, copying its master bytes inside the kernel
// (sendfile) straight into Hugging Face GPT-2 safetensors in output order, while a second thread checks each
// shard's CRC-32 over read-only mappings of the same pages. Peak memory is one 16 MiB mapping window plus the
// program, whatever the checkpoint's size; no model, no config and no GPU are needed. Output files are written under
// <name>.tmp and renamed into place only once every byte has been copied, verified and fsynced: a failed merge
// leaves no half-written model behind and overwrites nothing.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zt {

struct MergeOptions {
  std::string tag;                              // default: what <dir>/latest names, or dir itself if it is a tag
  uint64_t max_shard_bytes = 5000000000ull;     // like HF's max_shard_size
  bool verify = true;                           // check every shard's CRC-32 against the manifest
  std::function<void(uint64_t bytes_done, uint64_t bytes_total)> on_progress;  // output bytes
};

struct MergeReport {
  std::string tag_dir;
  int stage = 0;
  int world_size = 0;
  uint64_t num_params = 0;
  size_t num_tensors = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  std::vector<std::string> files;  // written: the safetensors, then the index (when sharded) and config.json
};

// Reads the manifest only: stage, world size, parameter count.
MergeReport inspect_checkpoint(const std::string& checkpoint_dir, const std::string& tag);

// output: a directory (model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json when
// over max_shard_bytes, plus a Hugging Face config.json) or a file path ending in .safetensors (one file). The tied
// lm_head is not written (GPT-2 loaders tie it back to transformer.wte.weight).
MergeReport merge_checkpoint_to_fp32(const std::string& checkpoint_dir, const std::string& output,
                                     const MergeOptions& options);

// Hugging Face GPT2Config (config.json) for a checkpoint manifest's "model" entry.
std::string hf_gpt2_config_json(int n_layer, int n_head, int n_embd, int vocab_size, int block_size);

}  // namespace zt
