// train.device: parsing, the settings the GPU path refuses, and the CPU/GPU choice for a machine and a build.
#include "engine/config/train_device.h"
#include "engine/runtime/device_choice.h"
#include "tests/config/config_test_util.h"

namespace zt {
namespace {

using test::config_error;
using test::with_batch;

Config parse(const std::string& members, const std::vector<std::string>& overrides = {}) {
  return parse_config_text(with_batch(members), "test.json", overrides);
}

TEST(TrainDevice, ParsesEachChoiceAndDefaultsToCpu) {
  EXPECT_EQ(parse("").train.device, TrainDevice::Cpu);
  EXPECT_EQ(parse(R"("train": {"device": "cpu"})").train.device, TrainDevice::Cpu);
  EXPECT_EQ(parse(R"("train": {"device": "cuda"})").train.device, TrainDevice::Cuda);
  EXPECT_EQ(parse(R"("train": {"device": "auto"})").train.device, TrainDevice::Auto);
  EXPECT_EQ(parse("", {"train.device=cuda"}).train.device, TrainDevice::Cuda);
}

TEST(TrainDevice, UnknownValueNamesTheKey) {
  const std::string msg = config_error(with_batch(R"("train": {"device": "gpu"})"));
  EXPECT_NE(msg.find("train.device"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gpu"), std::string::npos) << msg;
}

TEST(TrainDevice, RoundTripsThroughTheResolvedConfig) {
  const Config cfg = parse(R"("train": {"device": "auto"})");
  const Config again = parse_config_text(config_to_json(cfg).dump(), "resolved.json");
  EXPECT_EQ(again.train.device, TrainDevice::Auto);
}

TEST(TrainDevice, CudaRefusesWhatTheGpuPathCannotRunNamingEachKey) {
  struct Case {
    std::string members, names;
  };
  const std::vector<Case> cases = {
      {R"("activation_checkpointing": {})", "activation_checkpointing"},
      {R"("optimizer": {"type": "SGD", "params": {"lr": 0.1}})", "optimizer.type (SGD)"},
      {R"("zero_optimization": {"stage": 1, "offload_optimizer": {"device": "cpu"}})",
       "zero_optimization.offload_optimizer.device"},
      {R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device"},
      {R"("bf16": {"enabled": true}, "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device"},
  };
  for (const Case& c : cases) {
    const std::string msg = config_error(with_batch(c.members + R"(, "train": {"device": "cuda"})"));
    EXPECT_NE(msg.find("train.device: \"cuda\" does not support (yet) " + c.names), std::string::npos)
        << c.members << " gave: " << msg;
  }
  // The same unsupported settings are fine on the CPU and with "auto" (which then trains on the CPU).
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}, )"
                        R"("train": {"device": "auto"})"));
}

TEST(TrainDevice, CudaTakesStagesZeroToThreeInEachPrecision) {
  // fp32, bf16, and fp16 with a dynamic or a static loss scale: the GPU path's, with Adam/AdamW at stages 0-3.
  const std::vector<std::string> precisions = {
      "", R"("bf16": {"enabled": true}, )",
      R"("fp16": {"enabled": true, "initial_scale_power": 12, "loss_scale_window": 100, "hysteresis": 1, )"
      R"("min_loss_scale": 2}, )",
      R"("fp16": {"enabled": true, "loss_scale": 256}, )"};
  for (const std::string& precision : precisions) {
    for (int stage : {0, 1, 2, 3}) {
      SCOPED_TRACE(precision + "stage " + std::to_string(stage));
      Config cfg;
      EXPECT_NO_THROW(cfg = parse(precision + R"("train": {"device": "cuda"}, "zero_optimization": {"stage": )" +
                                  std::to_string(stage) + "}"));
      EXPECT_EQ(cfg.train.device, TrainDevice::Cuda);
      EXPECT_TRUE(cuda_unsupported_settings(cfg).empty());
      // "auto" picks the GPU for them where one is visible in a CUDA build.
      cfg.train.device = TrainDevice::Auto;
      EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
    }
  }
}

TEST(TrainDevice, JoinSettingsReadsAsAList) {
  EXPECT_EQ(join_settings({"a"}), "a");
  EXPECT_EQ(join_settings({"a", "b"}), "a and b");
  EXPECT_EQ(join_settings({"a", "b", "c"}), "a, b and c");
}

TEST(TrainDevice, ResolveForMachineAndBuild) {
  Config cfg = parse("");
  EXPECT_EQ(resolve_train_device(cfg, 4, true), TrainDevice::Cpu);  // cpu stays cpu with GPUs around

  cfg.train.device = TrainDevice::Cuda;
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  try {
    resolve_train_device(cfg, 0, true);
    ADD_FAILURE() << "cuda without a GPU must throw";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.device: \"cuda\", but no GPU is visible"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.exit_code(), 2);
  }
  try {
    resolve_train_device(cfg, 2, false);
    ADD_FAILURE() << "cuda in a build without CUDA must throw";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.device: \"cuda\", but this zerotrain was built without CUDA"),
              std::string::npos)
        << e.what();
  }

  cfg.train.device = TrainDevice::Auto;
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  EXPECT_EQ(resolve_train_device(cfg, 0, true), TrainDevice::Cpu);
  EXPECT_EQ(resolve_train_device(cfg, 1, false), TrainDevice::Cpu);
  cfg.zero.stage = 3;
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.offload_param.device = OffloadDevice::Cpu;  // not on the GPU path: auto falls back to the CPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cpu);
}

// This machine: where "auto" finds no GPU, "cuda" must be the usage error naming the key (the real probe, so this
// runs on every CPU machine; with a GPU visible it has nothing to check and skips).
TEST(TrainDevice, CudaOnThisMachineWithoutGpuIsAUsageError) {
  Config cfg = parse("");
  cfg.train.device = TrainDevice::Auto;
  if (choose_train_device(cfg) == TrainDevice::Cuda) GTEST_SKIP() << "a GPU is visible here";
  cfg.train.device = TrainDevice::Cuda;
  try {
    choose_train_device(cfg);
    ADD_FAILURE() << "train.device cuda without a usable GPU must throw";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("train.device: \"cuda\", but ", 0), 0u) << e.what();
    EXPECT_EQ(e.exit_code(), 2);
  }
}

}  // namespace
}  // namespace zt
