#pragma once
// GPT-2 forward and backward on one GPU, composed from the kernels of kernels/cuda, with the parameter layout of the
// CPU model (engine/model/gpt2.h), so that parameters and gradients move between the two as one flat buffer.
// Parameters, activations and gradients are stored in one storage type (fp32, bf16 or fp16); the kernels compute in
// fp32, and LayerNorm statistics, attention probabilities or log-sum-exp and the losses are kept in fp32.
// For ZeRO stage 3 it exposes the CPU model's unit hooks (UnitHooks, same units and order): each unit's parameters
// and gradients can live in buffers of their own, and the model may be built without full-size buffers at all.
// With activation checkpointing it keeps only each block's input and recomputes the block's forward in backward.
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
  // own_buffers = false (stage 3): no full-size parameter and gradient buffers; every unit must be given buffers
  // through set_unit_buffers (from a hook) before the model touches it.
  // activation_checkpointing: as GPT2's (one block's activations plus the block inputs; each block's forward runs
  // again in its backward, between the unit's before_backward and after_backward, as on the CPU).
  GPT2Cuda(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention,
           Storage storage = Storage::F32, bool own_buffers = true, bool activation_checkpointing = false);
  ~GPT2Cuda();
  GPT2Cuda(const GPT2Cuda&) = delete;
  GPT2Cuda& operator=(const GPT2Cuda&) = delete;

  Storage storage() const;
  size_t num_params() const;
  // Host buffers of num_params() floats. In 16-bit storage an upload rounds to nearest even (as the CPU engines'
  // round_to_working) and a download widens exactly.
  void upload_params(const float* host);
  // Elements [offset, offset + n) of the flat layout only (host: n floats).
  void upload_params(size_t offset, size_t n, const float* host);
  void download_params(float* host);
  void download_grads(float* host);
  void zero_grad();

  // As GPT2::forward: host token ids, returns the mean loss (this waits for the GPU).
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // As GPT2::backward: ACCUMULATES d(loss * grad_scale)/d(params) into the device gradients (asynchronous), in the
  // storage type: with fp16 a gradient beyond its range becomes inf, which the engine's overflow check finds.
  void backward(float grad_scale = 1.0f);
  void synchronize();
  // Device bytes of the activations for the last forward's (B, T) (kept for backward plus backward scratch).
  size_t activation_bytes() const;

  // For the engine that trains this model (engine/zero/cuda): the flat device buffers (num_params() elements of the
  // storage type), the stream all of the model's work runs on (a cudaStream_t), and the allocator whose blocks may
  // only be used on that stream.
  // As GPT2's: hooks around each use of a unit (nullptr = none), and unit u's parameters and gradients pointed at
  // device buffers of that unit's elements in the storage type, laid out as its slice of the flat layout (nullptr:
  // the slice of the model's own buffers). The pointers are read when a kernel is queued, after the hook.
  void set_hooks(UnitHooks* hooks);
  void set_unit_buffers(int unit, void* params, void* grads);
  // ZeRO stage 2: frees the full-size gradient buffer (the parameters stay); from then on every unit's gradient
  // buffer must be given through set_unit_buffers (from a hook) before the model writes it; download_grads throws.
  void drop_full_grads();

  // nullptr without own buffers.
  void* device_params();
  void* device_grads();
  void* stream();
  CachingAllocator& allocator();

  struct Impl;  // defined in the .cpp, one implementation per storage type

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cuda
