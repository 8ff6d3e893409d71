// ZeRO's model-state formulas against hand-computed bytes, and GPT-2's exact parameter counts.
#include <gtest/gtest.h>

#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"

namespace zt {
namespace {

constexpr int64_t kPsi = 1000000;

ModelStateBytes estimate(int stage, int n, Precision p, OffloadDevice opt = OffloadDevice::None,
                         OffloadDevice param = OffloadDevice::None) {
  MemoryEstimateInput in;
  in.num_params = kPsi;
  in.stage = stage;
  in.world_size = n;
  in.precision = p;
  in.optimizer_offload = opt;
  in.param_offload = param;
  return estimate_model_state_bytes(in);
}

void expect_bytes(const ModelStateBytes& b, int64_t params, int64_t grads, int64_t optim) {
  EXPECT_EQ(b.params, params);
  EXPECT_EQ(b.grads, grads);
  EXPECT_EQ(b.optimizer_states, optim);
  EXPECT_EQ(b.total, params + grads + optim);
  EXPECT_EQ(b.device, params + grads + optim);
  EXPECT_EQ(b.host, 0);
  EXPECT_EQ(b.nvme, 0);
}

// fp32: params 4Ψ, grads 4Ψ, Adam m and v 8Ψ; stages 1 and 2 also keep an fp32 master copy of their partition
// (12Ψ/N, as DeepSpeed's partitioned optimizer); stage 3's parameter partition is the master itself.
TEST(MemoryEstimate, Fp32EachStageWorldSize2) {
  expect_bytes(estimate(0, 2, Precision::Fp32), 4000000, 4000000, 8000000);
  expect_bytes(estimate(1, 2, Precision::Fp32), 4000000, 4000000, 6000000);
  expect_bytes(estimate(2, 2, Precision::Fp32), 4000000, 2000000, 6000000);
  expect_bytes(estimate(3, 2, Precision::Fp32), 2000000, 2000000, 4000000);
}

TEST(MemoryEstimate, Fp32EachStageWorldSize4) {
  expect_bytes(estimate(0, 4, Precision::Fp32), 4000000, 4000000, 8000000);
  expect_bytes(estimate(1, 4, Precision::Fp32), 4000000, 4000000, 3000000);
  expect_bytes(estimate(2, 4, Precision::Fp32), 4000000, 1000000, 3000000);
  expect_bytes(estimate(3, 4, Precision::Fp32), 1000000, 1000000, 2000000);
}

// Mixed precision: params 2Ψ, grads 2Ψ, optimizer 12Ψ (fp32 master, m, v).
TEST(MemoryEstimate, MixedPrecisionEachStageWorldSize2) {
  expect_bytes(estimate(0, 2, Precision::Bf16), 2000000, 2000000, 12000000);
  expect_bytes(estimate(1, 2, Precision::Bf16), 2000000, 2000000, 6000000);
  expect_bytes(estimate(2, 2, Precision::Fp16), 2000000, 1000000, 6000000);
  expect_bytes(estimate(3, 2, Precision::Fp16), 1000000, 1000000, 6000000);
}

TEST(MemoryEstimate, MixedPrecisionEachStageWorldSize4) {
  expect_bytes(estimate(0, 4, Precision::Fp16), 2000000, 2000000, 12000000);
  expect_bytes(estimate(1, 4, Precision::Fp16), 2000000, 2000000, 3000000);
  expect_bytes(estimate(2, 4, Precision::Bf16), 2000000, 500000, 3000000);
  expect_bytes(estimate(3, 4, Precision::Bf16), 500000, 500000, 3000000);
}

// The ZeRO paper's Figure 1: Ψ = 7.5B, N = 64, K = 12 -> 120 GB, 31.4 GB, 16.6 GB, 1.9 GB.
TEST(MemoryEstimate, ZeroPaperExample) {
  MemoryEstimateInput in;
  in.num_params = 7500000000;
  in.world_size = 64;
  in.precision = Precision::Fp16;
  const int64_t expected[] = {120000000000, 31406250000, 16640625000, 1875000000};
  for (int stage = 0; stage <= 3; stage++) {
    in.stage = stage;
    EXPECT_EQ(estimate_model_state_bytes(in).total, expected[stage]) << "stage " << stage;
  }
}

TEST(MemoryEstimate, OffloadMovesOptimizerAndParams) {
  ModelStateBytes cpu = estimate(3, 4, Precision::Bf16, OffloadDevice::Cpu, OffloadDevice::Nvme);
  EXPECT_EQ(cpu.total, 4000000);
  EXPECT_EQ(cpu.device, 500000);  // gradients stay
  EXPECT_EQ(cpu.host, 3000000);
  EXPECT_EQ(cpu.nvme, 500000);
  ModelStateBytes nvme = estimate(2, 2, Precision::Fp32, OffloadDevice::Nvme);
  EXPECT_EQ(nvme.device, 4000000 + 2000000);
  EXPECT_EQ(nvme.nvme, 6000000);  // m, v and the fp32 master partition: 12Ψ/2
  EXPECT_EQ(nvme.host, 0);
}

// Stage 3 in fp32 gathers from a working partition in memory while the NVMe optimizer keeps the master in a file.
TEST(MemoryEstimate, NvmeOptimizerKeepsTheMasterOnNvmeAtStage3) {
  ModelStateBytes in_memory = estimate(3, 2, Precision::Fp32);
  EXPECT_EQ(in_memory.optimizer_states, 4000000);  // m and v; the parameter partition is the master
  ModelStateBytes nvme = estimate(3, 2, Precision::Fp32, OffloadDevice::Nvme);
  EXPECT_EQ(nvme.params, 2000000);
  EXPECT_EQ(nvme.device, 2000000 + 2000000);  // the fp32 working partition and the gradients
  EXPECT_EQ(nvme.nvme, 6000000);              // master, m, v
  ModelStateBytes cpu = estimate(3, 2, Precision::Fp32, OffloadDevice::Cpu);
  EXPECT_EQ(cpu.host, 4000000) << "offload to cpu keeps the partition as the master";
}

TEST(MemoryEstimate, UnevenPartitionRoundsUp) {
  MemoryEstimateInput in;
  in.num_params = 10;
  in.stage = 3;
  in.world_size = 4;
  ModelStateBytes b = estimate_model_state_bytes(in);
  EXPECT_EQ(b.params, 4 * 3);
  EXPECT_EQ(b.optimizer_states, 8 * 3);
}

TEST(MemoryEstimate, SgdStateFromConfig) {
  Config cfg = parse_config_text(R"({"train_batch_size": 8, "optimizer": {"type": "SGD", "params": {"momentum": 0.9}}})",
                                 "t");
  MemoryEstimateInput in = memory_estimate_input(cfg, 2);
  EXPECT_EQ(in.optimizer_state_floats, 1);
  EXPECT_EQ(in.num_params, gpt2_param_count(cfg.model));
  EXPECT_EQ(estimate_model_state_bytes(in).optimizer_states, 4 * in.num_params);
}

TEST(Gpt2ParamCount, Presets) {
  auto count = [](const char* preset) {
    ModelConfig m;
    m.preset = preset;
    apply_model_preset(m);
    return gpt2_param_count(m);
  };
  // By hand: wte 16384 + wpe 4096 + 2 * 49984 + ln_f 128.
  EXPECT_EQ(count("gpt2-tiny"), 120576);
  // Hugging Face's gpt2, gpt2-medium, gpt2-large, gpt2-xl (tied head).
  EXPECT_EQ(count("gpt2-124M"), 124439808);
  EXPECT_EQ(count("gpt2-350M"), 354823168);
  EXPECT_EQ(count("gpt2-774M"), 774030080);
  EXPECT_EQ(count("gpt2-1558M"), 1557611200);
}

TEST(MemoryEstimate, HumanBytes) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(3LL << 30), "3.00 GiB");
}

}  // namespace
}  // namespace zt
