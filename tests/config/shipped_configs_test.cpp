// Every config in configs/ parses, as the realistic DeepSpeed configs they are meant to be.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"
#include "engine/config/train_device.h"

namespace zt {
namespace {

TEST(ShippedConfigs, EveryConfigParsesAndResolvesItsBatch) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ZT_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    Config cfg = parse_config_file(entry.path().string());
    EXPECT_GT(cfg.world_size, 0);
    BatchConfig b = resolve_batch(cfg, cfg.world_size);
    EXPECT_EQ(b.train_batch_size, b.micro_batch_per_gpu * b.gradient_accumulation_steps * cfg.world_size);
    EXPECT_FALSE(cfg.fp16.enabled);
    // The GPU configs train in bf16, the others in fp32.
    EXPECT_EQ(cfg.bf16, entry.path().filename().string().rfind("gpu_", 0) == 0);
    seen++;
  }
  EXPECT_EQ(seen, 8);
}

TEST(ShippedConfigs, StagesAndOffloadAreWhatTheNamesSay) {
  const std::string dir = std::string(ZT_SOURCE_DIR) + "/configs/";
  for (int stage = 0; stage <= 3; stage++) {
    Config cfg = parse_config_file(dir + "ds_zero_stage_" + std::to_string(stage) + ".json");
    EXPECT_EQ(cfg.zero.stage, stage);
    EXPECT_TRUE(cfg.model_defaulted);
    EXPECT_TRUE(cfg.data.embedded_default);
    EXPECT_EQ(cfg.world_size, 2);
  }
  Config cpu = parse_config_file(dir + "ds_zero_stage_3_offload_cpu.json");
  EXPECT_EQ(cpu.zero.offload_optimizer.device, OffloadDevice::Cpu);
  EXPECT_EQ(cpu.zero.offload_param.device, OffloadDevice::Cpu);
  Config nvme = parse_config_file(dir + "ds_zero_stage_3_offload_nvme.json");
  EXPECT_EQ(nvme.zero.offload_optimizer.device, OffloadDevice::Nvme);
  EXPECT_EQ(nvme.zero.offload_param.device, OffloadDevice::Nvme);
  EXPECT_EQ(nvme.zero.offload_param.nvme_path, "/var/tmp");
  Config tiny = parse_config_file(dir + "tiny_cpu.json");
  EXPECT_FALSE(tiny.model_defaulted);
  EXPECT_EQ(tiny.model.preset, "gpt2-tiny");
  EXPECT_EQ(tiny.world_size, 1);
  EXPECT_EQ(tiny.train.max_steps, 200);
  // The GPU's largest-model-with-offload measurement: a 4.2B GPT-2 shape at stage 3 with optimizer and parameters
  // in pinned host memory, which the GPU path takes.
  Config infinity = parse_config_file(dir + "gpu_infinity_gpt2_4b.json");
  EXPECT_EQ(infinity.train.device, TrainDevice::Cuda);
  EXPECT_EQ(infinity.zero.stage, 3);
  EXPECT_EQ(infinity.zero.offload_optimizer.device, OffloadDevice::Cpu);
  EXPECT_EQ(infinity.zero.offload_param.device, OffloadDevice::Cpu);
  EXPECT_TRUE(infinity.zero.offload_optimizer.pin_memory && infinity.zero.offload_param.pin_memory);
  EXPECT_TRUE(cuda_unsupported_settings(infinity).empty()) << join_settings(cuda_unsupported_settings(infinity));
  EXPECT_NEAR(static_cast<double>(gpt2_param_count(infinity.model)), 4.24e9, 0.01e9);
}

}  // namespace
}  // namespace zt
