#pragma once
// What the trainer runs each micro-batch through: the CPU model, or the GPU model whose parameters and gradients
// live on the device (engine/runtime/cuda). The ZeRO engine that goes with it owns everything about the step.
#include <cstdint>

#include "engine/model/gpt2.h"

namespace zt {

class StepModel {
 public:
  virtual ~StepModel() = default;
  // Mean loss over the B*T targets (as GPT2::forward).
  virtual float forward(const int32_t* inputs, const int32_t* targets, int B, int T) = 0;
  // Accumulates d(loss * grad_scale)/d(params) into the gradients (as GPT2::backward).
  virtual void backward(float grad_scale) = 0;
};

class CpuStepModel : public StepModel {
 public:
  explicit CpuStepModel(GPT2& model) : model_(model) {}
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T) override {
    return model_.forward(inputs, targets, B, T);
  }
  void backward(float grad_scale) override { model_.backward(grad_scale); }

 private:
  GPT2& model_;
};

}  // namespace zt
