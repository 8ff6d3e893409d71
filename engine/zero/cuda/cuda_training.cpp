#include "engine/zero/cuda/cuda_training.h"

#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/zero/cuda/gpu_zero_engine.h"
#include "engine/zero/cuda/nvtx_range.h"
#include "engine/zero/mixed_precision.h"

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

CudaTraining make_cuda_training(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                                ProcessGroup& host_pg, ProcessGroup* device_pg) {
  // Stage 3 never holds the full model on the device: the GPU model gets no full-size buffers.
  auto gpu = std::make_shared<cuda::GPT2Cuda>(layout.dims(), layout.params(), /*flash_attention=*/false,
                                              storage_for(cfg), /*own_buffers=*/cfg.zero.stage != 3,
                                              cfg.activation_checkpointing.enabled);
  CudaTraining t;
  t.engine = make_gpu_zero_engine(cfg, layout, init, gpu, host_pg, device_pg);
  t.model = std::make_unique<GpuStepModel>(std::move(gpu));
  return t;
}

}  // namespace zt
