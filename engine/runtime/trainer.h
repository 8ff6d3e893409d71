#pragma once
// Sequences training: micro-batches and accumulation, the ZeRO engine's step, eval, logging, metrics and the final
// save. One Trainer per rank; every rank runs the same sequence of collectives.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"

namespace zt {

struct TrainSummary {
  int64_t steps = 0;
  std::vector<double> losses;  // per optimizer step, mean over the global batch
  double last_val_loss = -1.0;
};

class Trainer {
 public:
  // device_pg: the group for collectives over GPU buffers when train.device resolves to cuda (may be null in a
  // world of one); pg serves everything on the host.
  Trainer(const Config& cfg, ProcessGroup& pg, ProcessGroup* device_pg = nullptr);
  TrainSummary run();

 private:
  const Config& cfg_;
  ProcessGroup& pg_;
  ProcessGroup* device_pg_;
};

// The embedded default corpus (tokenized at build time from Debian's fortunes): train or val shard paths.
std::vector<std::string> embedded_corpus_shards(bool val);

}  // namespace zt
