#pragma once
// What the GPU engines (gpu_zero_engine.cpp: stages 0-2, gpu_stage3_engine.cpp) share: the storage type's names, the
// checks of their arguments, the ordering of collectives after the model's work, the checkpoint state names, the
// reduced fp32 gradients on the device as finish_gradients works on them, and the choice of engine per precision.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/base/error.h"
#include "engine/comm/process_group.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/model/initial_weights.h"
#include "engine/zero/engine_common.h"
#include "engine/zero/mixed_precision.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grad_update.h"

namespace zt {

// The initial weights in chunks of at most 4Mi elements through one host buffer, put(offset, n, host) each: the
// host never holds the full model (put must be done with host when it returns).
template <typename Put>
void for_each_initial_chunk(const InitialWeights& init, Put&& put) {
  constexpr size_t kChunk = size_t(1) << 22;
  std::vector<float> host(std::min(kChunk, init.num_params()));
  for (size_t at = 0; at < init.num_params(); at += kChunk) {
    const size_t n = std::min(kChunk, init.num_params() - at);
    init.read(at, n, host.data());
    put(at, n, host.data());
  }
}

// Named as the CPU optimizer names its buffers, so checkpoints move between the CPU and the GPU path.
constexpr const char* kExpAvg = "exp_avg";
constexpr const char* kExpAvgSq = "exp_avg_sq";
constexpr const char* kMomentumBuffer = "momentum_buffer";

// The GPU engines' optimizer state: Adam/AdamW's two moments, or SGD's momentum buffer, which the engines keep in
// their first state buffer (exp_avg_; the second, exp_avg_sq_, is Adam's only).
inline std::vector<std::string> optimizer_state_names(const OptimizerConfig& o) {
  if (o.type == OptimizerType::SGD) return {kMomentumBuffer};
  return {kExpAvg, kExpAvgSq};
}
inline bool has_second_state(const OptimizerConfig& o) { return o.type != OptimizerType::SGD; }

// The update over each weight-decay range of params from the fp32 grads: Adam/AdamW with the CPU optimizer's
// per-step scalars, or SGD (decay on the decayed ranges only, as the CPU's).
inline void optimizer_update(const OptimizerConfig& o, bool decoupled, float* params, const float* grads,
                             float* state0, float* state1, const std::vector<DecayRange>& ranges, double lr,
                             int64_t step, cudaStream_t stream) {
  for (const DecayRange& d : ranges) {
    if (d.end <= d.begin) continue;
    const size_t n = d.end - d.begin;
    if (o.type == OptimizerType::SGD) {
      cuda::sgd_update(params + d.begin, grads + d.begin, state0 + d.begin, n, static_cast<float>(lr),
                       static_cast<float>(o.momentum), d.decay ? static_cast<float>(o.weight_decay) : 0.0f, stream);
    } else {
      cuda::adam_update(params + d.begin, grads + d.begin, state0 + d.begin, state1 + d.begin, n,
                        adam_step_scalars(o, decoupled, lr, step, d.decay), stream);
    }
  }
  ZT_CUDA_CHECK_LAUNCH("optimizer_update");
}

template <typename S>
constexpr cuda::Storage storage_of() {
  if constexpr (std::is_same_v<S, float>) return cuda::Storage::F32;
  if constexpr (std::is_same_v<S, __nv_bfloat16>) return cuda::Storage::BF16;
  return cuda::Storage::F16;
}

template <typename S>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<S, float>) return DType::F32;
  if constexpr (std::is_same_v<S, __nv_bfloat16>) return DType::BF16;
  return DType::F16;
}

// The reduced fp32 gradients on the device, as finish_gradients (engine/zero/engine_common.h) works on them: the
// overflow flag and the sum of squares come back to the host, scaling stays on the device.
class DeviceGradients : public ReducedGradients {
 public:
  DeviceGradients(float* grads, size_t n, cudaStream_t stream, float* partials, double* sum, int* flag)
      : grads_(grads), n_(n), stream_(stream), partials_(partials), sum_(sum), flag_(flag) {}

  bool has_nonfinite() override {
    ZT_CUDA_CHECK(cudaMemsetAsync(flag_, 0, sizeof(int), stream_));
    cuda::find_nonfinite(flag_, grads_, n_, stream_);
    int flag = 0;
    ZT_CUDA_CHECK(cudaMemcpyAsync(&flag, flag_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return flag != 0;
  }
  void scale(float factor) override { cuda::scale_inplace(grads_, n_, factor, stream_); }
  double sum_squares() override {
    cuda::sum_squares(sum_, partials_, grads_, n_, stream_);
    double sum = 0.0;
    ZT_CUDA_CHECK(cudaMemcpyAsync(&sum, sum_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    ZT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return sum;
  }

 private:
  float* grads_;
  size_t n_;
  cudaStream_t stream_;
  float* partials_;
  double* sum_;
  int* flag_;
};

// What every GPU engine requires of its arguments (no offloaded SGD, a device process group beyond one rank, a GPU model of the
// layout's size in the engine's storage type); throws RuntimeError naming what does not fit.
inline void check_gpu_engine_args(const Config& cfg, size_t layout_params, const cuda::GPT2Cuda& model,
                                  cuda::Storage storage, int world, const ProcessGroup* device_pg) {
  if (cfg.optimizer.type == OptimizerType::SGD && cfg.zero.offload_optimizer.device != OffloadDevice::None)
    throw RuntimeError("the GPU engine offloads Adam only: optimizer.type SGD with zero_optimization.offload_optimizer");
  if (world > 1 && device_pg == nullptr)
    throw RuntimeError("the GPU engine needs a process group for device buffers at world size " +
                       std::to_string(world));
  if (model.num_params() != layout_params)
    throw RuntimeError("the GPU engine: the GPU model has " + std::to_string(model.num_params()) +
                       " parameters, the layout " + std::to_string(layout_params));
  if (model.storage() != storage)
    throw RuntimeError(std::string("the GPU engine for ") + cuda::storage_name(storage) + " got a GPU model in " +
                       cuda::storage_name(model.storage()));
}

// Both device-buffer backends start a collective on their own stream after the work queued on the legacy default
// stream (NCCL's communication stream, the staging copier's copy stream). The model computes on a non-blocking
// stream, so the legacy stream is made to wait for the model's work here, on the device, without blocking the host.
inline void order_comm_after(cudaStream_t compute, cudaEvent_t event) {
  ZT_CUDA_CHECK(cudaEventRecord(event, compute));
  ZT_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, event, 0));
}

// The checkpoint buffer called name among the fp32 master and the optimizer's state buffers.
inline float* optimizer_state_buffer(const OptimizerConfig& o, const std::string& name, float* master, float* state0,
                                     float* state1) {
  if (name == "master") return master;
  const std::vector<std::string> names = optimizer_state_names(o);
  for (size_t i = 0; i < names.size(); ++i)
    if (name == names[i]) return i == 0 ? state0 : state1;
  throw RuntimeError("the GPU engine has no state buffer '" + name + "' (a checkpoint of another optimizer?)");
}

// Engine<S> for the config's working precision (S: float, __nv_bfloat16, __half).
template <template <typename> class Engine, typename... Args>
std::unique_ptr<ZeroEngine> make_for_precision(const Config& cfg, Args&&... args) {
  switch (working_precision(cfg)) {
    case WorkingPrecision::BF16:
      return std::make_unique<Engine<__nv_bfloat16>>(cfg, std::forward<Args>(args)...);
    case WorkingPrecision::F16:
      return std::make_unique<Engine<__half>>(cfg, std::forward<Args>(args)...);
    case WorkingPrecision::F32:
      break;
  }
  return std::make_unique<Engine<float>>(cfg, std::forward<Args>(args)...);
}

}  // namespace zt
