#pragma once
// GPT-2 forward and backward on one GPU, composed from the kernels of kernels/cuda, with the parameter layout of the
// CPU model (engine/model/gpt2.h), so that parameters and gradients move between the two as one flat buffer.
// Parameters, activations and gradients are stored in one storage type (fp32, bf16 or fp16); the kernels compute in
// fp32, and LayerNorm statistics, attention probabilities or log-sum-exp and the losses are kept in fp32.
// What it does not do (yet): ZeRO partitioning, unit hooks, activation checkpointing.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model/gpt2.h"

namespace zt::cuda {

class CachingAllocator;

enum class Storage { F32, BF16, F16 };
const char* storage_name(Storage s);
size_t storage_bytes(Storage s);  // per element

class GPT2Cuda {
 public:
  // layout: GPT2::params() of a CPU model of the same dims (the flat order is taken from it and checked).
  // flash_attention: the online-softmax forward (keeps lse instead of [T,T] probabilities per layer).
  GPT2Cuda(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention,
           Storage storage = Storage::F32);
  ~GPT2Cuda();
  GPT2Cuda(const GPT2Cuda&) = delete;
  GPT2Cuda& operator=(const GPT2Cuda&) = delete;

  Storage storage() const;
  size_t num_params() const;
  // Host buffers of num_params() floats. In 16-bit storage an upload rounds to nearest even (as the CPU engines'
  // round_to_working) and a download widens exactly.
  void upload_params(const float* host);
  void download_params(float* host);
  void download_grads(float* host);
  void zero_grad();

  // As GPT2::forward: host token ids, returns the mean loss (this waits for the GPU).
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // As GPT2::backward: ACCUMULATES d(loss * grad_scale)/d(params) into the device gradients (asynchronous), in the
  // storage type: with fp16 a gradient beyond its range becomes inf, which the engine's overflow check finds.
  void backward(float grad_scale = 1.0f);
  void synchronize();

  // For the engine that trains this model (engine/zero/cuda): the flat device buffers (num_params() elements of the
  // storage type), the stream all of the model's work runs on (a cudaStream_t), and the allocator whose blocks may
  // only be used on that stream.
  void* device_params();
  void* device_grads();
  void* stream();
  CachingAllocator& allocator();

  struct Impl;  // defined in the .cpp, one implementation per storage type

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cuda
