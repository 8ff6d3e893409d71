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
      {R"("optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": 3, )"
       R"("offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}})",
       "optimizer.type (SGD) with zero_optimization.offload_optimizer.device (nvme)"},
      // Parameters go to host memory only, and only with the optimizer offloaded too; the optimizer goes whole.
      {R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device (cpu) without zero_optimization.offload_optimizer"},
      {R"("bf16": {"enabled": true}, "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}})",
       "zero_optimization.offload_param.device (cpu) without zero_optimization.offload_optimizer"},
      {R"("zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_param.device (nvme) without zero_optimization.offload_optimizer"},
      {R"("zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "ratio": 0.5}})",
       "zero_optimization.offload_optimizer.ratio (0.5)"},
      {R"("optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": 3, )"
       R"("offload_optimizer": {"device": "nvme", "nvme_path": "/tmp", "ratio": 0.25}, )"
       R"("offload_param": {"device": "nvme", "nvme_path": "/tmp"}})",
       "zero_optimization.offload_optimizer.ratio (0.25) and "
       "optimizer.type (SGD) with zero_optimization.offload_optimizer.device (nvme)"},
  };
  for (const Case& c : cases) {
    const std::string msg = config_error(with_batch(c.members + R"(, "train": {"device": "cuda"})"));
    EXPECT_NE(msg.find("train.device: \"cuda\" does not support (yet) " + c.names), std::string::npos)
        << c.members << " gave: " << msg;
  }
  // The same unsupported settings are fine on the CPU and with "auto" (which then trains on the CPU).
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}, )"
                        R"("train": {"device": "auto"})"));
  EXPECT_NO_THROW(parse(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", )"
                        R"("nvme_path": "/tmp"}}, "train": {"device": "auto"})"));
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

TEST(TrainDevice, CudaTakesOptimizerOffloadToCpuAndNvmeAtStages1To3InEachPrecision) {
  // The host keeps the fp32 master and Adam state in every precision (in memory or in swap files); 16-bit weights
  // are rounded on the device, or on the host where the parameters are offloaded too.
  struct Offload {
    std::string members;
    OffloadDevice optimizer, param;
    int min_stage;
  };
  const std::vector<Offload> offloads = {
      {R"("offload_optimizer": {"device": "cpu", "pin_memory": true})", OffloadDevice::Cpu, OffloadDevice::None, 1},
      {R"("offload_optimizer": {"device": "cpu", "pin_memory": false})", OffloadDevice::Cpu, OffloadDevice::None, 1},
      {R"("offload_optimizer": {"device": "nvme", "nvme_path": "/tmp", "buffer_count": 3})", OffloadDevice::Nvme,
       OffloadDevice::None, 1},
      {R"("offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu", "pin_memory": true})",
       OffloadDevice::Cpu, OffloadDevice::Cpu, 3},
      {R"("offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}, "offload_param": {"device": "cpu"})",
       OffloadDevice::Nvme, OffloadDevice::Cpu, 3},
      {R"("offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}, "offload_param": {"device": "nvme", )"
       R"("nvme_path": "/tmp"})",
       OffloadDevice::Nvme, OffloadDevice::Nvme, 3},
      {R"("offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "nvme", "nvme_path": "/tmp"})",
       OffloadDevice::Cpu, OffloadDevice::Nvme, 3},
  };
  for (const std::string& precision : gpu_precisions()) {
    for (const Offload& o : offloads) {
      for (int stage = o.min_stage; stage <= 3; ++stage) {
        SCOPED_TRACE(precision + "stage " + std::to_string(stage) + " " + o.members);
        const Config cfg = parse(precision + R"("train": {"device": "cuda"}, "zero_optimization": {"stage": )" +
                                 std::to_string(stage) + ", " + o.members + "}");
        EXPECT_EQ(cfg.zero.offload_optimizer.device, o.optimizer);
        EXPECT_EQ(cfg.zero.offload_param.device, o.param);
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
  cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;  // also to NVMe
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.stage = 3;
  cfg.zero.offload_optimizer.device = OffloadDevice::Cpu;  // and at stage 3
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.offload_optimizer.ratio = 0.5;  // partial offload is not on the GPU path: auto falls back to the CPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cpu);
  cfg.zero.offload_optimizer.ratio = 1.0;
  cfg.zero.offload_param.device = OffloadDevice::Cpu;  // parameters to host memory with the optimizer: the GPU
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.offload_param.device = OffloadDevice::Nvme;  // to NVMe too
  EXPECT_EQ(resolve_train_device(cfg, 1, true), TrainDevice::Cuda);
  cfg.zero.offload_optimizer.device = OffloadDevice::None;
  cfg.zero.offload_param.device = OffloadDevice::Cpu;  // parameters without the optimizer: not on the GPU path
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
