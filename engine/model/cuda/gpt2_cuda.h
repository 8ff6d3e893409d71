#pragma once
// GPT-2 forward and backward on one GPU in fp32, composed from the kernels of kernels/cuda, with the parameter
// layout of the CPU model (engine/model/gpt2.h), so that parameters and gradients move between the two as one flat
// buffer. What it does not do (yet): ZeRO partitioning, unit hooks, activation checkpointing, mixed precision.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model/gpt2.h"

namespace zt::cuda {

class CachingAllocator;

class GPT2Cuda {
 public:
  // layout: GPT2::params() of a CPU model of the same dims (the flat order is taken from it and checked).
  // flash_attention: the online-softmax forward (keeps lse instead of [T,T] probabilities per layer).
  GPT2Cuda(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention);
  ~GPT2Cuda();
  GPT2Cuda(const GPT2Cuda&) = delete;
  GPT2Cuda& operator=(const GPT2Cuda&) = delete;

  size_t num_params() const;
  void upload_params(const float* host);  // num_params() floats
  void download_grads(float* host);       // num_params() floats
  void zero_grad();

  // As GPT2::forward: host token ids, returns the mean loss (this waits for the GPU).
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // As GPT2::backward: ACCUMULATES d(loss * grad_scale)/d(params) into the device gradients (asynchronous).
  void backward(float grad_scale = 1.0f);
  void synchronize();

  // For the engine that trains this model (engine/zero/cuda): the flat device buffers, the stream all of the
  // model's work runs on (a cudaStream_t), and the allocator whose blocks may only be used on that stream.
  float* device_params();
  float* device_grads();
  void* stream();
  CachingAllocator& allocator();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cuda
