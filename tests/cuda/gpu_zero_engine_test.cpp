// The GPU ZeRO engine (engine/zero/cuda) against the CPU engine of the same stage, in one process: same weights,
// same tokens, 5 steps with gradient accumulation, clipping and AdamW with weight decay under the warmup schedule.
// Per-step losses agree to 1e-5 relative; the final fp32 weights and Adam's first moment (through the checkpoint
// export) agree in relative L2 norm. A GPU engine rebuilt from exported state after 3 steps continues exactly as the
// uninterrupted one. The same at stages 1 and 2 with the optimizer offloaded to the CPU on both engines, in chunks
// (sub_group_size) smaller than a unit. Skips with "no GPU" without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "engine/comm/store.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/cuda/cuda_training.h"
#include "engine/zero/zero_engine.h"
#include "gpu_test_util.h"

namespace zt {
namespace {

const ModelDims kDims{2, 2, 64, 97, 64};
constexpr int kB = 2, kT = 48, kAccum = 2, kSteps = 5;

Config config(int stage) {
  Config cfg;
  cfg.zero.stage = stage;
  cfg.gradient_clipping = 0.5;
  cfg.optimizer.type = OptimizerType::AdamW;
  cfg.optimizer.lr = 3e-3;
  cfg.optimizer.beta2 = 0.95;
  cfg.optimizer.weight_decay = 0.1;
  cfg.scheduler.type = SchedulerType::WarmupLR;
  cfg.scheduler.warmup_type = WarmupType::Linear;
  cfg.scheduler.warmup_max_lr = 3e-3;
  cfg.scheduler.warmup_num_steps = 3;
  return cfg;
}

struct Trained {
  std::vector<float> losses, params, exp_avg;
  std::vector<std::vector<float>> state;  // full flat buffers of every state_names() entry
  std::vector<std::string> state_names;
};

struct EngineRun {
  std::unique_ptr<ProcessGroup> pg = make_gloo_process_group(0, 1, std::make_shared<LocalStore>(), 60.0);
  GPT2 model{kDims, false};
  std::unique_ptr<StepModel> step_model;
  std::unique_ptr<ZeroEngine> engine;

  EngineRun(const Config& cfg, bool gpu) {
    model.init_weights(11);
    if (gpu) {
      CudaTraining t = make_cuda_training(cfg, model, *pg, nullptr);
      step_model = std::move(t.model);
      engine = std::move(t.engine);
    } else {
      engine = make_zero_engine(cfg, model, *pg);
      step_model = std::make_unique<CpuStepModel>(model);
    }
  }

  std::vector<float> full_state(const std::string& name) {
    const PartitionMap& map = engine->partition_map();
    std::vector<float> part(map.partition_numel()), full(model.num_params());
    engine->export_partition(name, part.data());
    map.partition_to_flat(part.data(), full.data(), 0);
    return full;
  }
};

void train_steps(const Config& cfg, EngineRun& s, int from, int to, Trained& out) {
  std::vector<int32_t> tokens(kB * kT + 1);
  for (int step = from; step < to; ++step) {
    s.engine->begin_step();
    double loss = 0.0;
    for (int m = 0; m < kAccum; ++m) {
      for (size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = static_cast<int32_t>((i * 37 + step * 11 + m * 5 + (i * i) % 13) % kDims.vocab_size);
      loss += s.step_model->forward(tokens.data(), tokens.data() + 1, kB, kT);
      s.step_model->backward(1.0f / kAccum);
      s.engine->end_micro_batch(m + 1 == kAccum);
    }
    s.engine->step(scheduled_lr(cfg.scheduler, cfg.optimizer.lr, step), step + 1);
    out.losses.push_back(static_cast<float>(loss / kAccum));
  }
  out.params.assign(s.model.num_params(), 0.0f);
  s.engine->gather_full_params(out.params.data());
  out.exp_avg = s.full_state("exp_avg");
  out.state_names = s.engine->state_names();
  out.state.clear();
  for (const std::string& n : out.state_names) out.state.push_back(s.full_state(n));
}

double relative_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff / norm);
}

// Resume: 3 steps under `from`, export every state, a fresh engine under `to` imports it and runs steps 4-5, which
// must repeat the uninterrupted run's losses: exactly under the same setting (the same kernels in the same order on
// the same state); to 1e-5 relative across offload settings (the same state names and layout, only the Adam
// arithmetic's rounding differs between the CPU and the GPU kernel).
void check_resume(const Config& from, const Config& to, bool gpu, const Trained& uninterrupted) {
  Trained first, resumed;
  {
    EngineRun s(from, gpu);
    train_steps(from, s, 0, 3, first);
  }
  EngineRun s(to, gpu);
  for (size_t i = 0; i < first.state_names.size(); ++i)
    s.engine->import_full(first.state_names[i], first.state[i].data());
  s.engine->finish_import();
  train_steps(to, s, 3, kSteps, resumed);
  ASSERT_EQ(resumed.losses.size(), 2u);
  const bool same = from.zero.offload_optimizer.device == to.zero.offload_optimizer.device;
  for (int i = 0; i < 2; ++i) {
    if (same)
      EXPECT_FLOAT_EQ(resumed.losses[i], uninterrupted.losses[3 + i]) << "step " << 4 + i;
    else
      EXPECT_NEAR(resumed.losses[i], uninterrupted.losses[3 + i], 1e-5 * std::fabs(uninterrupted.losses[3 + i]))
          << "step " << 4 + i;
  }
}

void check_resume(const Config& cfg, bool gpu, const Trained& uninterrupted) {
  check_resume(cfg, cfg, gpu, uninterrupted);
}

// The optimizer in host memory (CPU Adam) on both engines; the GPU engine's step moves its partition in chunks of
// 1000 elements (pinned or pageable host memory).
Config offload_config(int stage, bool pin_memory) {
  Config cfg = config(stage);
  cfg.zero.offload_optimizer.device = OffloadDevice::Cpu;
  cfg.zero.offload_optimizer.pin_memory = pin_memory;
  cfg.zero.sub_group_size = 1000;
  return cfg;
}

Trained check_matches_cpu(const Config& cfg) {
  const int stage = cfg.zero.stage;
  Trained cpu, gpu;
  {
    EngineRun s(cfg, false);
    train_steps(cfg, s, 0, kSteps, cpu);
  }
  {
    EngineRun s(cfg, true);
    EXPECT_EQ(s.engine->stage(), stage);
    train_steps(cfg, s, 0, kSteps, gpu);
  }
  EXPECT_EQ(gpu.losses.size(), cpu.losses.size());
  for (size_t i = 0; i < std::min(cpu.losses.size(), gpu.losses.size()); ++i)
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-5 * std::fabs(cpu.losses[i])) << "step " << i + 1;
  // Adam turns tiny gradient differences of near-zero gradients into whole steps of lr, so elementwise equality is
  // not expected; the weights as a whole must agree.
  EXPECT_LT(relative_l2(gpu.params, cpu.params), 1e-4);
  EXPECT_LT(relative_l2(gpu.exp_avg, cpu.exp_avg), 1e-3);
  EXPECT_EQ(gpu.state_names, cpu.state_names);  // checkpoints move between the two paths
  return gpu;
}

void check_stage(int stage) {
  SCOPED_TRACE("stage " + std::to_string(stage));
  const Config cfg = config(stage);
  check_resume(cfg, true, check_matches_cpu(cfg));
}

void check_offload_stage(int stage) {
  for (bool pin : {true, false}) {
    SCOPED_TRACE("stage " + std::to_string(stage) + " offload_optimizer cpu, pin_memory " + (pin ? "true" : "false"));
    const Config cfg = offload_config(stage, pin);
    const Trained gpu = check_matches_cpu(cfg);
    check_resume(cfg, true, gpu);
    if (!pin) continue;
    check_resume(cfg, config(stage), true, gpu);  // offloaded -> on the device
    check_resume(config(stage), cfg, true, gpu);  // on the device -> offloaded
  }
}

TEST(GpuZeroEngine, Stage0MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_stage(0);
}

TEST(GpuZeroEngine, Stage1MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_stage(1);
}

TEST(GpuZeroEngine, Stage2MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_stage(2);
}

TEST(GpuZeroEngine, Stage1OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_offload_stage(1);
}

TEST(GpuZeroEngine, Stage2OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_offload_stage(2);
}

}  // namespace
}  // namespace zt

namespace zt {
namespace {

// The harness of the tests above on the CPU engine (runs without a GPU): the export/import resume is exact there.
TEST(GpuZeroEngineHarness, CpuEngineResumesExactly) {
  for (const Config& cfg : {config(0), config(1), config(2), offload_config(1, true), offload_config(2, true)}) {
    SCOPED_TRACE("stage " + std::to_string(cfg.zero.stage) + " offload " +
                 (cfg.zero.offload_optimizer.device == OffloadDevice::Cpu ? "cpu" : "none"));
    Trained full;
    EngineRun s(cfg, false);
    train_steps(cfg, s, 0, kSteps, full);
    check_resume(cfg, false, full);
  }
}

}  // namespace
}  // namespace zt
