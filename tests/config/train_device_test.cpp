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
      {R"("optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": 1, )"
       R"("offload_optimizer": {"device": "cpu"}})",
       "optimizer.type (SGD) with zero_optimization.offload_optimizer.device (cpu)"},
      {R"("zero_optimization": {"stage": 1, "offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.device (nvme)"},
      {R"("zero_optimization": {"stage": 2, "offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.device (nvme)"},
      {R"("bf16": {"enabled": true}, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "nvme", )"
       R"("nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.device (nvme)"},
      {R"("fp16": {"enabled": true}, "zero_optimization": {"stage": 1, "offload_optimizer": {"device": "nvme", )"
       R"("nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.device (nvme)"},
      {R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device (cpu)"},
      {R"("bf16": {"enabled": true}, "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device (cpu)"},
      {R"("zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_param.device (nvme)"},
      // Optimizer offload to the CPU is the stage 1-2 engine's; the stage-3 engine keeps its state on the device.
      {R"("zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}})",
       "zero_optimization.offload_optimizer.device (cpu) at zero_optimization.stage 3"},
      {R"("bf16": {"enabled": true}, "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}})",
       "zero_optimization.offload_optimizer.device (cpu) at zero_optimization.stage 3"},
      {R"("fp16": {"enabled": true}, "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", )"
       R"("pin_memory": true}})",
       "zero_optimization.offload_optimizer.device (cpu) at zero_optimization.stage 3"},
      {R"("zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.device (nvme)"},
      {R"("zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, )"
       R"("offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_optimizer.device (cpu) at zero_optimization.stage 3 and "
       "zero_optimization.offload_param.device (cpu)"},
  };
  for (const Case& c : cases) {
    const std::string msg = config_error(with_batch(c.members + R"(, "train": {"device": "cuda"})"));
    EXPECT_NE(msg.find("train.device: \"cuda\" does not support (yet) " + c.names), std::string::npos)
        << c.members << " gave: " << msg;
  }
  // The same unsupported settings are fine on the CPU and with "auto" (which then trains on the CPU).
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}, )"
                        R"("train": {"device": "auto"})"));
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}, )"
                        R"("train": {"device": "auto"})"));
}

// fp32, bf16, and fp16 with a dynamic or a static loss scale, as config members (each followed by a comma).
const std::vector<std::string>& gpu_precisions() {
  static const std::vector<std::string> precisions = {
      "", R"("bf16": {"enabled": true}, )",
      R"("fp16": {"enabled": true, "initial_scale_power": 12, "loss_scale_window": 100, "hysteresis": 1, )"
      R"("min_loss_scale": 2}, )",
      R"("fp16": {"enabled": true, "loss_scale": 256}, )"};
  return precisions;
}

TEST(TrainDevice, CudaTakesStagesZeroToThreeInEachPrecision) {
  // Every precision is the GPU path's, with Adam/AdamW at stages 0-3.
  for (const std::string& precision : gpu_precisions()) {
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

TEST(TrainDevice, AttentionParsesEachChoiceDefaultsToAutoAndRoundTrips) {
  EXPECT_EQ(parse("").train.attention, TrainAttention::Auto);
  EXPECT_EQ(parse(R"("train": {"device": "cuda", "attention": "flash"})").train.attention, TrainAttention::Flash);
  EXPECT_EQ(parse(R"("train": {"attention": "reference"})").train.attention, TrainAttention::Reference);
  EXPECT_EQ(parse("", {"train.device=auto", "train.attention=flash"}).train.attention, TrainAttention::Flash);
  for (const char* a : {"auto", "flash", "reference"}) {
    const Config cfg = parse(std::string(R"("train": {"device": "cuda", "attention": ")") + a + "\"}");
    EXPECT_STREQ(train_attention_name(cfg.train.attention), a);
    const Config again = parse_config_text(config_to_json(cfg).dump(), "resolved.json");
    EXPECT_EQ(again.train.attention, cfg.train.attention) << a;
  }
  const std::string bad = config_error(with_batch(R"("train": {"attention": "fast"})"));
  EXPECT_NE(bad.find("train.attention"), std::string::npos) << bad;
  // The CPU model has reference attention only: flash on the CPU is refused, naming both keys.
  const std::string cpu = config_error(with_batch(R"("train": {"device": "cpu", "attention": "flash"})"));
  EXPECT_NE(cpu.find("train.attention: \"flash\""), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("train.device"), std::string::npos) << cpu;
}

TEST(TrainDevice, CudaTakesActivationCheckpointingAndSgdAtEveryStage) {
  for (int stage : {0, 1, 2, 3}) {
    SCOPED_TRACE("stage " + std::to_string(stage));
    const std::string zero = R"("zero_optimization": {"stage": )" + std::to_string(stage) + "}";
    const Config ckpt = parse(R"("activation_checkpointing": {}, "train": {"device": "cuda"}, )" + zero);
    EXPECT_TRUE(ckpt.activation_checkpointing.enabled);
    EXPECT_TRUE(cuda_unsupported_settings(ckpt).empty()) << join_settings(cuda_unsupported_settings(ckpt));
    const Config sgd = parse(R"("optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, )"
                             R"("weight_decay": 0.01}}, "train": {"device": "cuda"}, )" + zero);
    EXPECT_EQ(sgd.optimizer.type, OptimizerType::SGD);
    EXPECT_TRUE(cuda_unsupported_settings(sgd).empty()) << join_settings(cuda_unsupported_settings(sgd));
  }
}

TEST(TrainDevice, CudaTakesOptimizerOffloadToCpuAtStages1And2InEachPrecision) {
  // The host keeps the fp32 master and Adam state in every precision; 16-bit weights are rounded on the device.
  for (const std::string& precision : gpu_precisions()) {
    for (int stage : {1, 2}) {
      for (const char* pin : {"true", "false"}) {
        SCOPED_TRACE(precision + "stage " + std::to_string(stage) + " pin_memory " + pin);
        const Config cfg = parse(precision + R"("train": {"device": "cuda"}, "zero_optimization": {"stage": )" +
                                 std::to_string(stage) + R"(, "offload_optimizer": {"device": "cpu", "pin_memory": )" +
                                 pin + "}}");
        EXPECT_EQ(cfg.zero.offload_optimizer.device, OffloadDevice::Cpu);
        EXPECT_EQ(cfg.zero.offload_optimizer.pin_memory, std::string(pin) == "true");
        EXPECT_TRUE(cuda_unsupported_settings(cfg).empty()) << join_settings(cuda_unsupported_settings(cfg));
        Config automatic = cfg;
        automatic.train.device = TrainDevice::Auto;
        EXPECT_EQ(resolve_train_device(automatic, 1, true), TrainDevice::Cuda);
      }
    }
  }
  // The command line's spelling, and the deprecated cpu_offload flag, mean the same.
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 2})",
                        {"train.device=cuda", "zero_optimization.offload_optimizer.device=cpu"}));
  EXPECT_NO_THROW(parse(R"("train": {"device": "cuda"}, "zero_optimization": {"stage": 1, "cpu_offload": true})"));
  // Stage 0 has no optimizer partition to offload, on either device (the cross-field rule names the key).
  const std::string msg = config_error(
      with_batch(R"("train": {"device": "cuda"}, "zero_optimization": {"offload_optimizer": {"device": "cpu"}})"));
  EXPECT_NE(msg.find("zero_optimization.offload_optimizer.device"), std::string::npos) << msg;
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
  cfg.zero.stage = 2;
  cfg.bf16 = true;
  cfg.zero.offload_optimizer.device = OffloadDevice::Cpu;  // on the GPU path (in bf16 too): auto takes the GPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;  // not on the GPU path: auto falls back to the CPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cpu);
  cfg.zero.stage = 3;
  cfg.zero.offload_optimizer.device = OffloadDevice::Cpu;  // the stage-3 engine does not offload: the CPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cpu);
  cfg.zero.offload_optimizer.device = OffloadDevice::None;
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
