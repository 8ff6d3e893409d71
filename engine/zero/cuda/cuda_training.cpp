#include "engine/zero/cuda/cuda_training.h"

#include <string>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/gpu_zero_engine.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/cuda/pinned_host_allocator.h"
#include "engine/zero/mixed_precision.h"
#include "kernels/cuda/attention.h"

namespace zt {
namespace {

class GpuStepModel : public StepModel {
 public:
  explicit GpuStepModel(std::shared_ptr<cuda::GPT2Cuda> model) : model_(std::move(model)) {}
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T) override {
    cuda::NvtxRange range("forward");
    return model_->forward(inputs, targets, B, T);
  }
  void backward(float grad_scale) override {
    cuda::NvtxRange range("backward");
    model_->backward(grad_scale);
  }

 private:
  std::shared_ptr<cuda::GPT2Cuda> model_;
};

// The GPU model stores what the CPU engines hold in working precision (engine/zero/mixed_precision.h).
cuda::Storage storage_for(const Config& cfg) {
  switch (working_precision(cfg)) {
    case WorkingPrecision::BF16:
      return cuda::Storage::BF16;
    case WorkingPrecision::F16:
      return cuda::Storage::F16;
    case WorkingPrecision::F32:
      break;
  }
  return cuda::Storage::F32;
}

}  // namespace

bool use_flash_attention(const Config& cfg) {
  const int head_dim = cfg.model.n_embd / cfg.model.n_head;
  switch (cfg.train.attention) {
    case TrainAttention::Reference:
      return false;
    case TrainAttention::Flash:
      if (!cuda::flash_attention_supports(head_dim))
        throw ConfigError("train.attention: \"flash\", but its kernel takes head dims 32 and 64, not " +
                          std::to_string(head_dim) + " (model.n_embd / model.n_head); use \"reference\" or "
                          "\"auto\"");
      return true;
    case TrainAttention::Auto:
      break;
  }
  return cuda::flash_attention_supports(head_dim);
}

CudaTraining make_cuda_training(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                                ProcessGroup& host_pg, ProcessGroup* device_pg) {
  // Stage 3 never holds the full model on the device: the GPU model gets no full-size buffers.
  const bool flash = use_flash_attention(cfg);
  spdlog::info("GPU model: {} storage, {} attention{}", cuda::storage_name(storage_for(cfg)),
               flash ? "flash" : "reference", cfg.activation_checkpointing.enabled ? ", activation checkpointing" : "");
  auto gpu = std::make_shared<cuda::GPT2Cuda>(layout.dims(), layout.params(), flash,
                                              storage_for(cfg), /*own_buffers=*/cfg.zero.stage != 3,
                                              cfg.activation_checkpointing.enabled);
  // The engines' swap buffer pools (NVMe offload) are made below: registered with CUDA, as DeepSpeed pins its.
  cuda::use_pinned_host_buffers();
  CudaTraining t;
  t.engine = make_gpu_zero_engine(cfg, layout, init, gpu, host_pg, device_pg);
  t.model = std::make_unique<GpuStepModel>(std::move(gpu));
  return t;
}

}  // namespace zt
