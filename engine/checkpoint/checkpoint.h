#pragma once
// Sharded training checkpoints: <save_dir>/global_step<N>/ holds one shard per rank (its partition of the fp32 master
// weights and optimizer state, its data-loader position) and manifest.json (format, model shape, partition map,
// progress, a CRC-32 and size per file). docs/checkpoint.md is the format's reference.
//
// A save is atomic: everything is written under <save_dir>/.tmp_global_step<N>/, fsynced, renamed into place by rank
// 0 once every rank's shard is durable, and only then is <save_dir>/latest replaced (write + fsync + rename). A
// process killed at any moment leaves the previous checkpoint and `latest` intact.
//
// A load re-partitions: every rank rebuilds the full flat tensors from all saved shards with the saved partition map
// and takes what its own engine needs, so the world size and the ZeRO stage may change between save and resume.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"
#include "engine/data/data_loader.h"
#include "engine/model/gpt2.h"
#include "engine/zero/zero_engine.h"

namespace zt {

inline constexpr int kCheckpointFormatVersion = 1;

struct TrainingProgress {
  int64_t step = 0;     // optimizer steps attempted (the loop counter)
  int64_t updates = 0;  // optimizer steps taken (skipped fp16 steps excluded): Adam's t and the schedule's step
  LoaderState loader;   // this rank's
  int64_t micro_batch = 0;  // the loader's B when saved (to map positions to another world size)
};

// All ranks call. Returns the tag directory written.
std::string save_checkpoint(const Config& cfg, const GPT2& model, ZeroEngine& engine, ProcessGroup& pg,
                            const TrainingProgress& progress);

// "latest" (resolved through <save_dir>/latest), a tag name under save_dir, or a path to a tag directory.
std::string resolve_checkpoint_dir(const std::string& resume, const std::string& save_dir);

// All ranks call. Validates the manifest and every file (existence, size, CRC-32) and the model shape, then loads
// the state into the engine. Returns the progress to continue from (the loader position mapped onto this world
// size and micro-batch). Throws RuntimeError naming the file or tensor; changes nothing on disk.
TrainingProgress load_checkpoint(const std::string& dir, const GPT2& model, ZeroEngine& engine, ProcessGroup& pg,
                                 int64_t micro_batch, bool shuffle);

}  // namespace zt
