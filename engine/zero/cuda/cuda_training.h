#pragma once
// The GPU training pair the trainer uses when train.device resolves to cuda: the GPU model (GPT-2 on this process's
// current device, in fp32, bf16 or fp16 as the config's precision says, flash or reference attention as
// train.attention says, with activation checkpointing as configured) and the ZeRO engine
// over its device buffers. Plain C++, so the trainer includes it without CUDA headers; it exists only in builds with
// CUDA (ZT_HAVE_CUDA).
#include <memory>

#include "engine/comm/process_group.h"
#include "engine/model/gpt2.h"
#include "engine/model/initial_weights.h"
#include "engine/model/step_model.h"
#include "engine/zero/zero_engine.h"

namespace zt {

struct CudaTraining {
  std::unique_ptr<StepModel> model;
  std::unique_ptr<ZeroEngine> engine;
};

// Whether the GPU model uses flash attention: train.attention "flash" (a ConfigError naming the key when its kernel
// lacks the model's head dim), "reference", or "auto": flash where the kernel has the head dim (GPT-2's 64 among
// them).
bool use_flash_attention(const Config& cfg);

// layout: a GPT2 of the model's dims, normally without buffers (GPT2Buffers::None): the weights live on the device,
// streamed there from init. device_pg as in make_gpu_zero_engine.
CudaTraining make_cuda_training(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                                ProcessGroup& host_pg, ProcessGroup* device_pg);

}  // namespace zt
