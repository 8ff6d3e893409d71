#include "engine/zero/cuda/offload_chunk_pipeline.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/base/error.h"

namespace zt {

void run_chunk_pipeline(const ChunkSplit& split, size_t lookahead, ChunkCopier& copier,
                        const std::function<void(size_t begin, size_t end)>& update) {
  if (split.chunk == 0) throw RuntimeError("offload chunk pipeline: the chunk size must be at least 1 element");
  if (lookahead == 0) throw RuntimeError("offload chunk pipeline: lookahead must be at least 1 chunk");
  const size_t count = split.count();
  size_t queued = 0;  // downloads queued so far: chunks [0, queued)
  for (size_t k = 0; k < count; ++k) {
    // Before blocking on chunk k, the downloads up to k + lookahead are on the stream, so the copy engine keeps
    // working while the CPU updates chunk k.
    for (const size_t last = std::min(count, k + 1 + lookahead); queued < last; ++queued)
      copier.queue_download(queued, split.begin(queued), split.end(queued));
    copier.wait_download(k);
    update(split.begin(k), split.end(k));
    copier.queue_upload(k, split.begin(k), split.end(k));
  }
  copier.finish();
}

void run_nvme_chunk_pipeline(NvmeOptimizerState& state, size_t lookahead, ChunkCopier& copier, float* host_grads,
                             const std::vector<DecayRange>& ranges, const offload::CpuAdamHyper& hyper, int64_t step,
                             const MasterSink& updated) {
  if (lookahead == 0) throw RuntimeError("offload chunk pipeline: lookahead must be at least 1 chunk");
  const ChunkSplit split{state.size(), state.sub_group_elements()};
  const size_t count = split.count();
  size_t queued = 0;  // downloads queued so far: chunks [0, queued)
  // Before sub-group k is updated (its state read), the downloads up to k + lookahead are on the stream.
  auto ready = [&](size_t begin, size_t) {
    const size_t k = begin / split.chunk;
    for (const size_t last = std::min(count, k + 1 + lookahead); queued < last; ++queued)
      copier.queue_download(queued, split.begin(queued), split.end(queued));
    copier.wait_download(k);
  };
  auto upload = [&](size_t begin, size_t len, const float* master) {
    if (updated) updated(begin, len, master);
    std::memcpy(host_grads + begin, master, len * sizeof(float));
    copier.queue_upload(begin / split.chunk, begin, begin + len);
  };
  state.step(host_grads, ranges, hyper, step, upload, ready);
  copier.finish();
}

void HostAdamPartition::update(size_t begin, size_t end, const offload::CpuAdamHyper& hyper, int64_t step) const {
  if (begin > end || end > n)
    throw RuntimeError("offloaded Adam: chunk [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") is outside the partition of " + std::to_string(n) + " elements");
  offload::cpu_adam_step(master + begin, grads + begin, exp_avg + begin, exp_avg_sq + begin, end - begin, hyper, step,
                         ranges_in_chunk(ranges, begin, end));
}

float* HostAdamPartition::state(const std::string& name) const {
  if (name == "master") return master;
  if (name == "exp_avg") return exp_avg;
  if (name == "exp_avg_sq") return exp_avg_sq;
  throw RuntimeError("the offloaded optimizer has no state buffer '" + name +
                     "' (master, exp_avg, exp_avg_sq; a checkpoint of another optimizer?)");
}

std::vector<DecayRange> ranges_in_chunk(const std::vector<DecayRange>& ranges, size_t begin, size_t end) {
  std::vector<DecayRange> out;
  for (const DecayRange& r : ranges) {
    const size_t b = std::max(r.begin, begin), e = std::min(r.end, end);
    if (b < e) out.push_back({b - begin, e - begin, r.decay});
  }
  return out;
}

}  // namespace zt
