#pragma once
// Token shards in llm.c's format (256 int32 header: magic 20240520, version 1, token count; then uint16 tokens),
// memory-mapped, and a rank-aware batch loader over them. docs/data.md states the sampling rules.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zt {

class TokenShard {
 public:
  // Throws RuntimeError naming the file (and offset) for a bad magic or version, truncation or an empty shard.
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  const uint16_t* tokens() const { return tokens_; }
  size_t size() const { return n_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  size_t n_ = 0;
};

// Expands paths and globs (sorted, de-duplicated); throws RuntimeError when a pattern matches nothing.
std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns);

struct LoaderState {
  uint64_t epoch = 0;
  uint64_t shard = 0;     // shuffle=false: current shard
  uint64_t position = 0;  // shuffle=false: micro-batch counter b in the shard; shuffle=true: local sample index
};

class DataLoader {
 public:
  // B sequences of T tokens per micro-batch for this rank. Token ids >= vocab_size are an error naming file and
  // offset, checked when the shards are opened.
  DataLoader(const std::vector<std::string>& patterns, int B, int T, int rank, int world_size, uint64_t seed,
             bool shuffle, int vocab_size);
  ~DataLoader();
  // inputs and targets: B*T each (targets are inputs shifted by one).
  void next_batch(int32_t* inputs, int32_t* targets);
  void reset();
  LoaderState state() const;
  void restore(const LoaderState& s);
  size_t total_tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt
