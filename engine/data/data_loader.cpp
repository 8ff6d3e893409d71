// The rank-aware batch loader over token shards. docs/data.md states both sampling rules; in short:
//   shuffle=false (llm.c's rule): micro-batch b of rank r reads B*T+1 tokens at (b*W + r)*B*T of the current
//     shard; when that window would run past the shard's end, the next shard starts with b = 0.
//   shuffle=true: the samples are the T+1-token windows at i*T of every shard; epoch e permutes them with
//     Fisher-Yates driven by splitmix64(seed, e); rank r takes permuted positions r, r+W, ... and micro-batch b
//     takes its local samples [b*B, (b+1)*B).
#include <algorithm>

#include "engine/base/error.h"
#include "engine/data/data_loader.h"

namespace zt {
namespace {

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Index of the first token >= vocab_size, or n when every id is valid. The max pass is branch-free; the search only
// runs when it failed.
size_t first_bad_token(const uint16_t* tokens, size_t n, int vocab_size) {
  uint16_t max_token = 0;
  for (size_t i = 0; i < n; i++) max_token = std::max(max_token, tokens[i]);
  if (static_cast<int>(max_token) < vocab_size) return n;
  for (size_t i = 0; i < n; i++) {
    if (static_cast<int>(tokens[i]) >= vocab_size) return i;
  }
  return n;
}

}  // namespace

struct DataLoader::Impl {
  int B = 0, T = 0, rank = 0, world_size = 1;
  uint64_t seed = 0;
  bool shuffle = false;
  std::vector<std::unique_ptr<TokenShard>> shards;
  // shuffle=true: sample s of the concatenation is window (s - first_sample[k]) of shard k.
  std::vector<uint64_t> first_sample;
  uint64_t n_samples = 0;
  uint64_t samples_per_rank = 0;
  std::vector<uint64_t> permutation;  // of the current epoch
  uint64_t permutation_epoch = UINT64_MAX;
  LoaderState st;

  void build_permutation(uint64_t epoch) {
    if (permutation_epoch == epoch) return;
    permutation.resize(n_samples);
    for (uint64_t i = 0; i < n_samples; i++) permutation[i] = i;
    uint64_t mix = seed;
    uint64_t rng = splitmix64(mix) ^ (epoch * 0xD1B54A32D192ED03ull);
    for (uint64_t i = n_samples; i > 1; i--) {
      uint64_t j = splitmix64(rng) % i;  // modulo bias is < i / 2^64: irrelevant here
      std::swap(permutation[i - 1], permutation[j]);
    }
    permutation_epoch = epoch;
  }

  void copy_window(const uint16_t* window, int b, int32_t* inputs, int32_t* targets) const {
    for (int t = 0; t < T; t++) {
      inputs[static_cast<size_t>(b) * T + t] = window[t];
      targets[static_cast<size_t>(b) * T + t] = window[t + 1];
    }
  }

  void next_sequential(int32_t* inputs, int32_t* targets) {
    size_t bt = static_cast<size_t>(B) * T;
    for (;;) {
      size_t start = (st.position * world_size + rank) * bt;
      if (start + bt + 1 <= shards[st.shard]->size()) {
        const uint16_t* window = shards[st.shard]->tokens() + start;
        for (int b = 0; b < B; b++) copy_window(window + static_cast<size_t>(b) * T, b, inputs, targets);
        st.position++;
        return;
      }
      // The constructor checked that some shard fits this rank's first window, so one pass over the shards
      // always finds a window.
      st.position = 0;
      st.shard++;
      if (st.shard == shards.size()) {
        st.shard = 0;
        st.epoch++;
      }
    }
  }

  void next_shuffled(int32_t* inputs, int32_t* targets) {
    if (st.position + B > samples_per_rank) {
      st.position = 0;
      st.epoch++;
    }
    build_permutation(st.epoch);
    for (int b = 0; b < B; b++) {
      uint64_t local = st.position + b;
      uint64_t sample = permutation[rank + local * world_size];
      size_t k = std::upper_bound(first_sample.begin(), first_sample.end(), sample) - first_sample.begin() - 1;
      uint64_t window_index = sample - first_sample[k];
      copy_window(shards[k]->tokens() + window_index * T, b, inputs, targets);
    }
    st.position += B;
  }
};

DataLoader::DataLoader(const std::vector<std::string>& patterns, int B, int T, int rank, int world_size,
                       uint64_t seed, bool shuffle, int vocab_size)
    : impl_(std::make_unique<Impl>()) {
  if (B <= 0 || T <= 0) {
    throw ConfigError("data: micro-batch size and seq_len must be positive (B=" + std::to_string(B) +
                      ", T=" + std::to_string(T) + ")");
  }
  if (world_size <= 0 || rank < 0 || rank >= world_size) {
    throw ConfigError("data: rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world_size));
  }
  if (vocab_size <= 0 || vocab_size > 65536) {
    throw ConfigError("data: vocab_size " + std::to_string(vocab_size) + " does not fit uint16 tokens");
  }
  Impl& d = *impl_;
  d.B = B;
  d.T = T;
  d.rank = rank;
  d.world_size = world_size;
  d.seed = seed;
  d.shuffle = shuffle;
  size_t min_tokens = shuffle ? static_cast<size_t>(T) + 1 : static_cast<size_t>(B) * T + 1;
  for (const std::string& path : expand_shard_patterns(patterns)) {
    auto shard = std::make_unique<TokenShard>(path);
    if (shard->size() < min_tokens) {
      throw RuntimeError("token shard " + path + ": " + std::to_string(shard->size()) +
                         " tokens, shorter than one window of " + std::to_string(min_tokens) + " tokens" +
                         (shuffle ? " (seq_len+1)" : " (B*seq_len+1 with shuffle=false)"));
    }
    size_t bad = first_bad_token(shard->tokens(), shard->size(), vocab_size);
    if (bad != shard->size()) {
      throw RuntimeError("token shard " + path + ": token " + std::to_string(shard->tokens()[bad]) +
                         " at token offset " + std::to_string(bad) + " is >= vocab_size " +
                         std::to_string(vocab_size));
    }
    d.first_sample.push_back(d.n_samples);
    d.n_samples += (shard->size() - 1) / static_cast<size_t>(T);
    d.shards.push_back(std::move(shard));
  }
  if (shuffle) {
    d.samples_per_rank = d.n_samples / static_cast<uint64_t>(world_size);
    if (d.samples_per_rank < static_cast<uint64_t>(B)) {
      throw RuntimeError("data: " + std::to_string(d.n_samples) + " windows of " + std::to_string(T + 1) +
                         " tokens cannot give each of " + std::to_string(world_size) + " ranks a micro-batch of " +
                         std::to_string(B));
    }
  } else {
    // Rank 0's first window fits every shard; a later rank needs at least one shard where its first window fits.
    size_t need = (static_cast<size_t>(rank) + 1) * B * T + 1;
    bool any = false;
    for (const auto& sh : d.shards) any = any || sh->size() >= need;
    if (!any) {
      throw RuntimeError("data: with shuffle=false rank " + std::to_string(rank) + " needs a shard of at least " +
                         std::to_string(need) + " tokens; none is that long");
    }
  }
}

DataLoader::~DataLoader() = default;

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  if (impl_->shuffle) {
    impl_->next_shuffled(inputs, targets);
  } else {
    impl_->next_sequential(inputs, targets);
  }
}

void DataLoader::reset() { impl_->st = LoaderState{}; }

LoaderState DataLoader::state() const { return impl_->st; }

void DataLoader::restore(const LoaderState& s) {
  const Impl& d = *impl_;
  if (!d.shuffle && s.shard >= d.shards.size()) {
    throw RuntimeError("data: loader state names shard " + std::to_string(s.shard) + " but there are " +
                       std::to_string(d.shards.size()) + " shards");
  }
  if (d.shuffle && s.position > d.samples_per_rank) {
    throw RuntimeError("data: loader state position " + std::to_string(s.position) + " is beyond the " +
                       std::to_string(d.samples_per_rank) + " samples of this rank per epoch");
  }
  impl_->st = s;
}

size_t DataLoader::total_tokens() const {
  size_t total = 0;
  for (const auto& sh : impl_->shards) total += sh->size();
  return total;
}

}  // namespace zt
