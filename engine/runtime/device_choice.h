#pragma once
// train.device against this machine and this build (the logic is resolve_train_device in engine/config).
#include "engine/config/config.h"

namespace zt {

// Cpu or Cuda; throws ConfigError naming train.device when "cuda" cannot run here.
TrainDevice choose_train_device(const Config& cfg);

// Makes GPU local_rank % (visible GPUs) current for this process, before any CUDA resource or NCCL communicator is
// made; ranks beyond the GPU count share GPUs (their collectives then go through Gloo with host staging).
void use_gpu_of_local_rank(int local_rank);

}  // namespace zt
