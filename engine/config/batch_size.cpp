// DeepSpeed's batch-size derivation (runtime/config.py: _set_batch_related_parameters and _batch_assertion).
#include <string>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

BatchConfig resolve_batch(const Config& cfg, int world_size) {
  if (world_size < 1) throw ConfigError("world_size must be >= 1, got " + std::to_string(world_size));
  const int64_t ws = world_size;
  int64_t train = cfg.train_batch_size, micro = cfg.train_micro_batch_size_per_gpu,
          gas = cfg.gradient_accumulation_steps;
  std::string derived;
  // Integer division as DeepSpeed does; a remainder shows up as a mismatch in the check below.
  if (train > 0 && micro > 0 && gas > 0) {
  } else if (train > 0 && micro > 0) {
    gas = train / micro / ws;
    derived = " (gradient_accumulation_steps derived as " + std::to_string(train) + " / " + std::to_string(micro) +
              " / " + std::to_string(ws) + ")";
  } else if (train > 0 && gas > 0) {
    micro = train / ws / gas;
    derived = " (train_micro_batch_size_per_gpu derived as " + std::to_string(train) + " / " + std::to_string(ws) +
              " / " + std::to_string(gas) + ")";
  } else if (micro > 0 && gas > 0) {
    train = micro * gas * ws;
  } else if (train > 0) {
    gas = 1;
    micro = train / ws;
    derived = " (gradient_accumulation_steps defaults to 1, train_micro_batch_size_per_gpu derived as " +
              std::to_string(train) + " / " + std::to_string(ws) + ")";
  } else if (micro > 0) {
    gas = 1;
    train = micro * ws;
  } else {
    throw ConfigError(
        "train_batch_size: either train_batch_size or train_micro_batch_size_per_gpu must be given");
  }
  if (micro <= 0 || gas <= 0 || train != micro * gas * ws) {
    throw ConfigError("batch sizes disagree: train_batch_size " + std::to_string(train) +
                      " != train_micro_batch_size_per_gpu " + std::to_string(micro) +
                      " * gradient_accumulation_steps " + std::to_string(gas) + " * world_size " +
                      std::to_string(ws) + " = " + std::to_string(micro * gas * ws) + derived);
  }
  return BatchConfig{train, micro, gas};
}

}  // namespace zt
