#pragma once
// train.device: which settings the GPU path supports, and the choice between CPU and GPU for a run. The choice is
// plain logic over the number of visible GPUs and whether this build has CUDA, so it is tested on the CPU; the
// runtime (engine/runtime/device_choice.h) supplies the machine's real values.
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace zt {

const char* train_device_name(TrainDevice d);
const char* train_attention_name(TrainAttention a);

// The settings of cfg the GPU training path cannot run yet, each as "key (value)"; empty when it can.
std::vector<std::string> cuda_unsupported_settings(const Config& cfg);
// "a, b and c".
std::string join_settings(const std::vector<std::string>& settings);

// Cpu or Cuda for this run. "cuda" without CUDA in the build or without a visible GPU is a ConfigError naming
// train.device; "auto" is Cuda only when both are there and the config is supported on the GPU.
TrainDevice resolve_train_device(const Config& cfg, int visible_gpus, bool built_with_cuda);

}  // namespace zt
