// The GPU ZeRO engine (engine/zero/cuda) against the CPU engine of the same stage, in one process: same weights,
// same tokens, 5 steps with gradient accumulation, clipping and AdamW with weight decay under the warmup schedule.
// Per-step losses agree to 1e-5 relative; the final fp32 weights and Adam's first moment (through the checkpoint
// export) agree in relative L2 norm. A GPU engine rebuilt from exported state after 3 steps continues exactly as the
// uninterrupted one. The same at stages 1 and 2 with the optimizer offloaded to the CPU on both engines, in chunks
// (sub_group_size) smaller than a unit; in bf16 (to 2e-2, also offloaded), and fp16 with a loss scale that overflows
// (the same steps skipped, also offloaded). Stage 3 (fp32, bf16, fp16) gathers every unit around each use, resumes
// from the CPU engine's stage-1 state, and holds a few units at its device peak, never the full model. Stages 0-2
// reducing in several buckets during backward, with and without overlap_comm, and with the last micro-batch not
// announced, match the CPU engine too. ZeRO-Infinity against the CPU engine with the same offload: the optimizer in
// NVMe swap files (stages 2 and 3), stage 3 with the optimizer in host memory (fp32, bf16, fp16), with the parameters
// in host memory too (fp32, bf16; also with the optimizer on NVMe) and with parameters and optimizer on NVMe (fp32,
// bf16), each resuming exactly and across offload settings. Skips with "no GPU" without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/store.h"
#include "engine/config/config_parser.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/cuda/cuda_training.h"
#include "engine/zero/cuda/gpu_zero_engine.h"
#include "engine/zero/partition_map.h"
#include "engine/zero/zero_engine.h"
#include "kernels/cuda/caching_allocator.h"
#include "gpu_test_util.h"

namespace zt {
namespace {

const ModelDims kDims{2, 2, 64, 97, 64};
constexpr int kB = 2, kT = 48, kAccum = 2, kSteps = 5;
constexpr int kFp16Steps = 7;

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
  cfg.train.attention = TrainAttention::Reference;  // the CPU model's attention (flash has tests of its own)
  if (stage == 3) {
    // Every unit gathered before and freed after each use (this model's units are below the default persistence
    // threshold, and the default reuse distance would keep them all gathered).
    cfg.zero.stage3_param_persistence_threshold = 0;
    cfg.zero.stage3_max_reuse_distance = 0;
  }
  return cfg;
}

// Whether train_steps tells the engine which micro-batch is the step's last before its forward (as the trainer does);
// without it the GPU engine reduces at stages 0-1 only at the boundary.
bool g_announce_last_micro_batch = true;

// SGD with momentum and weight decay instead of AdamW.
Config sgd_config(int stage) {
  Config cfg = config(stage);
  cfg.optimizer.type = OptimizerType::SGD;
  cfg.optimizer.momentum = 0.9;
  cfg.optimizer.weight_decay = 0.01;
  return cfg;
}

Config checkpointing_config(int stage) {
  Config cfg = config(stage);
  cfg.activation_checkpointing.enabled = true;
  return cfg;
}

struct Trained {
  std::vector<float> losses, params, exp_avg, loss_scales;
  std::vector<bool> skipped;
  ScalerState scaler;
  MemoryStats memory;
  std::vector<std::vector<float>> state;  // full flat buffers of every state_names() entry
  std::vector<std::string> state_names;
};

struct EngineRun {
  std::unique_ptr<ProcessGroup> pg = make_gloo_process_group(0, 1, std::make_shared<LocalStore>(), 60.0);
  GPT2 model;
  std::unique_ptr<StepModel> step_model;
  std::unique_ptr<ZeroEngine> engine;

  EngineRun(const Config& cfg, bool gpu) : model(kDims, cfg.activation_checkpointing.enabled) {
    model.init_weights(11);
    if (gpu) {
      // The trainer's GPU path: the initial weights generated from the seed, chunk by chunk, not read from the model.
      CudaTraining t = make_cuda_training(cfg, model, *seeded_initial_weights(model, 11), *pg, nullptr);
      step_model = std::move(t.model);
      engine = std::move(t.engine);
    } else {
      engine = make_zero_engine(cfg, model, *pg);
      step_model = std::make_unique<CpuStepModel>(model);
    }
  }

  // Every state buffer and the scaler of `from` (as trained by train_steps), as a resume from a checkpoint.
  void import_state(const Trained& from) {
    for (size_t i = 0; i < from.state_names.size(); ++i) engine->import_full(from.state_names[i], from.state[i].data());
    engine->finish_import();
    engine->set_scaler_state(from.scaler);
  }

  std::vector<float> full_state(const std::string& name) {
    const PartitionMap& map = engine->partition_map();
    std::vector<float> part(map.partition_numel()), full(model.num_params());
    engine->export_partition(name, part.data());
    map.partition_to_flat(part.data(), full.data(), 0);
    return full;
  }
};

// The tokens of micro-batch m of step `step` (kB * kT inputs and the next token as targets).
void fill_tokens(std::vector<int32_t>& tokens, int step, int m) {
  tokens.resize(kB * kT + 1);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>((i * 37 + step * 11 + m * 5 + (i * i) % 13) % kDims.vocab_size);
}

// As the trainer: the loss gradient carries the engine's loss scale; a skipped step (fp16 overflow) advances neither
// the schedule nor Adam's step count.
void train_steps(const Config& cfg, EngineRun& s, int from, int to, Trained& out) {
  std::vector<int32_t> tokens;
  int64_t updates = from;
  for (int step = from; step < to; ++step) {
    s.engine->begin_step();
    double loss = 0.0;
    for (int m = 0; m < kAccum; ++m) {
      fill_tokens(tokens, step, m);
      if (g_announce_last_micro_batch) s.engine->begin_micro_batch(m + 1 == kAccum);
      loss += s.step_model->forward(tokens.data(), tokens.data() + 1, kB, kT);
      s.step_model->backward(s.engine->loss_scale() / kAccum);
      s.engine->end_micro_batch(m + 1 == kAccum);
    }
    const StepResult r = s.engine->step(scheduled_lr(cfg.scheduler, cfg.optimizer.lr, updates), updates + 1);
    if (!r.skipped) ++updates;
    out.losses.push_back(static_cast<float>(loss / kAccum));
    out.skipped.push_back(r.skipped);
    out.loss_scales.push_back(r.loss_scale);
  }
  out.scaler = s.engine->scaler_state();
  out.memory = s.engine->memory();
  out.params.assign(s.model.num_params(), 0.0f);
  s.engine->gather_full_params(out.params.data());
  out.state_names = s.engine->state_names();
  const bool adam = std::find(out.state_names.begin(), out.state_names.end(), "exp_avg") != out.state_names.end();
  out.exp_avg = s.full_state(adam ? "exp_avg" : "momentum_buffer");  // SGD's only state
  out.state.clear();
  for (const std::string& n : out.state_names) out.state.push_back(s.full_state(n));
}

// A fresh engine of cfg on the CPU or the GPU, trained for `steps` steps from the start.
Trained train_fresh(const Config& cfg, bool gpu, int steps) {
  Trained out;
  EngineRun s(cfg, gpu);
  EXPECT_EQ(s.engine->stage(), cfg.zero.stage);
  train_steps(cfg, s, 0, steps, out);
  return out;
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
  s.import_state(first);
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

// Checkpoints move between devices and stages: the CPU engine's stage-1 state after 3 steps, imported into a stage-3
// engine (on the GPU, or on the CPU to check the harness), continues with the CPU run's losses.
void check_stage3_resumes_from_cpu_stage1(bool gpu) {
  const Config cpu_cfg = config(1), s3_cfg = config(3);
  Trained first, cpu_rest, resumed;
  EngineRun cpu(cpu_cfg, false);
  train_steps(cpu_cfg, cpu, 0, 3, first);
  train_steps(cpu_cfg, cpu, 3, kSteps, cpu_rest);
  EngineRun s3(s3_cfg, gpu);
  s3.import_state(first);
  train_steps(s3_cfg, s3, 3, kSteps, resumed);
  ASSERT_EQ(resumed.losses.size(), cpu_rest.losses.size());
  for (size_t i = 0; i < cpu_rest.losses.size(); ++i)
    EXPECT_NEAR(resumed.losses[i], cpu_rest.losses[i], 1e-5 * std::fabs(cpu_rest.losses[i])) << "step " << i + 4;
  EXPECT_LT(relative_l2(resumed.params, cpu_rest.params), 1e-4);
}

// The optimizer in host memory (CPU Adam) on both engines; the GPU engine's step moves its partition in chunks of
// 1000 elements (pinned or pageable host memory).
Config offload_config(const Config& base, bool pin_memory) {
  Config cfg = base;
  cfg.zero.offload_optimizer.device = OffloadDevice::Cpu;
  cfg.zero.offload_optimizer.pin_memory = pin_memory;
  cfg.zero.sub_group_size = 1000;
  return cfg;
}

Config offload_config(int stage, bool pin_memory) { return offload_config(config(stage), pin_memory); }

// ZeRO-Infinity's optimizer: master and Adam state in swap files (three buffer sets of 1024-element sub-groups).
Config nvme_config(const Config& base) {
  static const std::string dir = [] {
    const std::string d = std::string(ZT_BINARY_DIR) + "/gpu_zero_engine_test_nvme";
    std::filesystem::create_directories(d);
    return d;
  }();
  Config cfg = base;
  cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;
  cfg.zero.offload_optimizer.nvme_path = dir;
  cfg.zero.offload_optimizer.buffer_count = 3;
  cfg.zero.sub_group_size = 1024;
  return cfg;
}

// Stage 3's parameter partition in host memory (with an offloaded optimizer in base).
Config param_offload_config(const Config& base, bool pin_memory) {
  Config cfg = base;
  cfg.zero.offload_param.device = OffloadDevice::Cpu;
  cfg.zero.offload_param.pin_memory = pin_memory;
  return cfg;
}

// ... or in a swap file, read through two buffers (fewer than the units gathered ahead: buffers are reclaimed).
Config param_nvme_config(const Config& base) {
  Config cfg = nvme_config(base);
  cfg.zero.offload_param = OffloadParamConfig{};
  cfg.zero.offload_param.device = OffloadDevice::Nvme;
  cfg.zero.offload_param.nvme_path = cfg.zero.offload_optimizer.nvme_path;
  cfg.zero.offload_param.buffer_count = 2;
  return cfg;
}

Trained check_matches_cpu(const Config& cfg) {
  const Trained cpu = train_fresh(cfg, false, kSteps), gpu = train_fresh(cfg, true, kSteps);
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

Config bf16_config(int stage) {
  Config cfg = config(stage);
  cfg.bf16 = true;
  return cfg;
}

// bf16 on both sides: the CPU engine rounds fp32 compute to bf16 at parameters and gradients, the GPU also stores
// activations in bf16, so the two agree to bf16's precision (2e-2), not bit for bit. The GPU run resumes exactly.
// With the optimizer offloaded, the host's updated fp32 partition is rounded to bf16 on the device before the
// allgather, as the CPU offload engine rounds its gathered master.
void check_bf16(const Config& cfg) {
  const Trained cpu = train_fresh(cfg, false, kSteps), gpu = train_fresh(cfg, true, kSteps);
  // The model (stage 3: the partition it gathers from, none with offload_param) really holds 16-bit parameters.
  const size_t held = cfg.zero.offload_param.device != OffloadDevice::None ? 0
                      : cfg.zero.stage == 3 ? PartitionMap(GPT2(kDims, false), 1).partition_numel()
                                            : gpu.params.size();
  EXPECT_EQ(gpu.memory.param_bytes, held * 2);
  ASSERT_EQ(gpu.losses.size(), cpu.losses.size());
  for (size_t i = 0; i < cpu.losses.size(); ++i)
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 2e-2 * std::fabs(cpu.losses[i])) << "step " << i + 1;
  EXPECT_LT(relative_l2(gpu.params, cpu.params), 2e-2);  // the fp32 masters
  EXPECT_LT(relative_l2(gpu.exp_avg, cpu.exp_avg), 1e-1);
  EXPECT_EQ(gpu.state_names, cpu.state_names);
  check_resume(cfg, true, gpu);
}

void check_bf16_stage(int stage) {
  SCOPED_TRACE("bf16, stage " + std::to_string(stage));
  check_bf16(bf16_config(stage));
}

TEST(GpuZeroEngine, Bf16Stage0MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_bf16_stage(0);
}

TEST(GpuZeroEngine, Bf16Stage1MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_bf16_stage(1);
}

TEST(GpuZeroEngine, Bf16Stage2MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_bf16_stage(2);
}

TEST(GpuZeroEngine, Bf16Stage1OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("bf16, stage 1, offload_optimizer cpu");
  check_bf16(offload_config(bf16_config(1), true));
}

TEST(GpuZeroEngine, Bf16Stage2OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("bf16, stage 2, offload_optimizer cpu");
  check_bf16(offload_config(bf16_config(2), true));
}

// fp16 with a dynamic loss scale chosen from the first step's largest gradient (CPU, fp32, the same weights and
// tokens) so that the first step overflows fp16 by a factor 2 to 4: both engines must skip it (and the steps after,
// while the halved scale still overflows), agree on every step's skip and scale, and train on after the scale has
// come down. Overflow on the GPU is real fp16 overflow in the model's gradients, accumulated over the micro-batches;
// on the CPU it is the rounding of its accumulated fp32 gradients to fp16 at stages 0-1. (Not stage 2: the CPU's
// stage 2 rounds and reduces each micro-batch's gradient and sums those in fp32, so it overflows later than an fp16
// accumulation; the GPU's stage 2 accumulates in fp16 as its stage 1 does.)
Config fp16_config_overflowing_first_step(int stage) {
  GPT2 model(kDims, false);
  model.init_weights(11);
  model.zero_grad();
  std::vector<int32_t> tokens;
  for (int m = 0; m < kAccum; ++m) {
    fill_tokens(tokens, 0, m);
    model.forward(tokens.data(), tokens.data() + 1, kB, kT);
    model.backward(1.0f / kAccum);
  }
  float largest = 0.0f;
  for (size_t i = 0; i < model.num_params(); ++i) largest = std::max(largest, std::fabs(model.grad_data()[i]));
  Config cfg = config(stage);
  cfg.fp16.enabled = true;
  cfg.fp16.initial_scale_power = static_cast<int>(std::ceil(std::log2(65504.0 / largest))) + 1;
  cfg.fp16.hysteresis = 1;
  cfg.fp16.loss_scale_window = 1000;
  return cfg;
}

void check_fp16_overflow(const Config& cfg) {
  const Trained cpu = train_fresh(cfg, false, kFp16Steps), gpu = train_fresh(cfg, true, kFp16Steps);
  ASSERT_EQ(gpu.skipped.size(), cpu.skipped.size());
  ASSERT_TRUE(cpu.skipped[0]) << "the first step at scale 2^" << cfg.fp16.initial_scale_power << " did not overflow";
  EXPECT_TRUE(gpu.skipped[0]);
  EXPECT_NE(std::count(cpu.skipped.begin(), cpu.skipped.end(), false), 0) << "no step ever trained";
  for (size_t i = 0; i < cpu.skipped.size(); ++i) {
    EXPECT_EQ(gpu.skipped[i], cpu.skipped[i]) << "step " << i + 1 << " at scale " << cpu.loss_scales[i];
    EXPECT_EQ(gpu.loss_scales[i], cpu.loss_scales[i]) << "step " << i + 1;
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 2e-2 * std::fabs(cpu.losses[i])) << "step " << i + 1;
  }
  EXPECT_EQ(gpu.scaler.scale, cpu.scaler.scale);
  EXPECT_LT(relative_l2(gpu.params, cpu.params), 2e-2);
}

TEST(GpuZeroEngine, Fp16Stage0SkipsOverflowingStepsAsTheCpuEngine) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("fp16, stage 0");
  check_fp16_overflow(fp16_config_overflowing_first_step(0));
}

TEST(GpuZeroEngine, Fp16Stage1SkipsOverflowingStepsAsTheCpuEngine) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("fp16, stage 1");
  check_fp16_overflow(fp16_config_overflowing_first_step(1));
}

// Offloaded, the overflow check and unscale run on the device before the partition goes to the host; a skipped step
// moves nothing.
TEST(GpuZeroEngine, Fp16Stage1OffloadSkipsOverflowingStepsAsTheCpuOffloadEngine) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("fp16, stage 1, offload_optimizer cpu");
  check_fp16_overflow(offload_config(fp16_config_overflowing_first_step(1), true));
}

// Stage 3 on both sides reduces each micro-batch's unit gradients and accumulates them in fp32.
TEST(GpuZeroEngine, Fp16Stage3SkipsOverflowingStepsAsTheCpuEngine) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("fp16, stage 3");
  check_fp16_overflow(fp16_config_overflowing_first_step(3));
}

TEST(GpuZeroEngine, Stage3OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_offload_stage(3);
}

TEST(GpuZeroEngine, Bf16Stage3OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("bf16, stage 3, offload_optimizer cpu");
  check_bf16(offload_config(bf16_config(3), true));
}

TEST(GpuZeroEngine, Fp16Stage3OffloadSkipsOverflowingStepsAsTheCpuOffloadEngine) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("fp16, stage 3, offload_optimizer cpu");
  check_fp16_overflow(offload_config(fp16_config_overflowing_first_step(3), true));
}

// The optimizer in NVMe swap files on both engines: the GPU engine's chunks are the swap files' sub-groups.
TEST(GpuZeroEngine, NvmeOffloadMatchesCpuNvmeEngineAndResumes) {
  ZT_REQUIRE_GPU();
  for (int stage : {1, 2, 3}) {
    SCOPED_TRACE("stage " + std::to_string(stage) + " offload_optimizer nvme");
    const Config cfg = nvme_config(config(stage));
    const Trained gpu = check_matches_cpu(cfg);
    check_resume(cfg, true, gpu);
    check_resume(cfg, offload_config(stage, true), true, gpu);  // from the swap files to host memory
  }
}

// Stage 3 with the parameter partition in host memory: the device holds neither the working partition nor the
// optimizer state, and the run matches the CPU engine with the same offload and resumes (also to and from the
// device-resident engine).
TEST(GpuZeroEngine, Stage3ParamOffloadMatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  for (bool pin : {true, false}) {
    for (bool nvme : {false, true}) {
      SCOPED_TRACE(std::string("offload_param cpu, pin_memory ") + (pin ? "true" : "false") + ", optimizer on " +
                   (nvme ? "nvme" : "cpu"));
      const Config opt = nvme ? nvme_config(config(3)) : offload_config(3, true);
      const Config cfg = param_offload_config(opt, pin);
      const Trained gpu = check_matches_cpu(cfg);
      EXPECT_EQ(gpu.memory.param_bytes, 0u);
      EXPECT_EQ(gpu.memory.optimizer_bytes, 0u);
      check_resume(cfg, true, gpu);
      if (!pin || nvme) continue;
      check_resume(cfg, config(3), true, gpu);
      check_resume(config(3), cfg, true, gpu);
    }
  }
}

// Parameters and optimizer in NVMe swap files (ZeRO-Infinity) on both engines.
TEST(GpuZeroEngine, Stage3ParamNvmeMatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp32") + ", offload_param and offload_optimizer nvme");
    const Config cfg = param_nvme_config(bf16 ? bf16_config(3) : config(3));
    if (bf16) {
      check_bf16(cfg);
      continue;
    }
    const Trained gpu = check_matches_cpu(cfg);
    EXPECT_EQ(gpu.memory.param_bytes, 0u);
    check_resume(cfg, true, gpu);
    check_resume(cfg, config(3), true, gpu);
  }
}

TEST(GpuZeroEngine, Bf16Stage3ParamOffloadMatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("bf16, stage 3, offload_param and offload_optimizer cpu");
  check_bf16(param_offload_config(offload_config(bf16_config(3), true), true));
}

TEST(GpuZeroEngine, Stage3MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_stage(3);
}

TEST(GpuZeroEngine, Bf16Stage3MatchesCpuEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_bf16_stage(3);
}

// With the default persistence threshold every unit of this small model persists: stage 3 then gathers once per
// step and must still train as the CPU engine with the same keys.
TEST(GpuZeroEngine, Stage3WithPersistentUnitsMatchesCpuEngine) {
  ZT_REQUIRE_GPU();
  Config cfg = config(3);
  cfg.zero.stage3_param_persistence_threshold = ZeroConfig().stage3_param_persistence_threshold;
  cfg.zero.stage3_max_reuse_distance = ZeroConfig().stage3_max_reuse_distance;
  const Trained cpu = train_fresh(cfg, false, kSteps), gpu = train_fresh(cfg, true, kSteps);
  for (size_t i = 0; i < cpu.losses.size(); ++i)
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-5 * std::fabs(cpu.losses[i])) << "step " << i + 1;
  EXPECT_LT(relative_l2(gpu.params, cpu.params), 1e-4);
}

TEST(GpuZeroEngine, Stage3ResumesFromTheCpuEnginesStage1State) {
  ZT_REQUIRE_GPU();
  check_stage3_resumes_from_cpu_stage1(true);
}

// Bytes the device allocator holds at its peak over two training steps of `own` (the GPU model with or without
// full-size buffers, and its engine), beyond what it held after the engine was built; and the engine's report.
struct DevicePeak {
  size_t base = 0, peak = 0;
  MemoryStats memory;
};

DevicePeak device_peak(const Config& cfg, const ModelDims& dims) {
  auto pg = make_gloo_process_group(0, 1, std::make_shared<LocalStore>(), 60.0);
  GPT2 layout(dims, false, GPT2Buffers::None);  // as the trainer's GPU path: no host copy of the model
  auto gpu = std::make_shared<cuda::GPT2Cuda>(dims, layout.params(), false, cuda::Storage::F32,
                                              /*own_buffers=*/cfg.zero.stage != 3);
  std::unique_ptr<ZeroEngine> engine =
      make_gpu_zero_engine(cfg, layout, *seeded_initial_weights(layout, 5), gpu, *pg, nullptr);
  gpu->synchronize();
  DevicePeak out;
  out.base = gpu->allocator().stats().allocated_bytes;
  gpu->allocator().reset_peaks();
  std::vector<int32_t> tokens(kB * kT + 1);
  for (int step = 0; step < 2; ++step) {
    engine->begin_step();
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7 + step) % dims.vocab_size);
    gpu->forward(tokens.data(), tokens.data() + 1, kB, kT);
    gpu->backward(1.0f);
    engine->end_micro_batch(true);
    engine->step(1e-3, step + 1);
  }
  gpu->synchronize();
  out.peak = gpu->allocator().stats().peak_allocated_bytes;
  out.memory = engine->memory();
  return out;
}

// Stage 2 drops the model's full-size gradient and the full padded staging: with a bucket of one block its device peak
// over two steps is below stage 1's by the full gradient less the unit buffers it takes instead (the embeddings',
// held through backward for the tied LM head, and one block's at a time) and by the padded staging less its two
// bucket-sized slots; memory() counts the fp32 partition as the gradient and the slots and unit buffers in the comm
// term.
TEST(GpuZeroEngine, Stage2HoldsNoFullGradientBuffer) {
  ZT_REQUIRE_GPU();
  const ModelDims dims{12, 2, 64, 97, 64};
  const GPT2 layout(dims, false);
  const PartitionMap map(layout, 1);
  size_t padded = 0;
  for (const UnitShard& u : map.units()) padded += u.padded;
  const size_t n = layout.num_params(), embeddings = map.units()[0].numel, block = map.units()[1].numel;
  const size_t block_padded = map.units()[1].padded;
  ASSERT_LT(map.units()[0].padded, block_padded);  // every bucket one unit, the largest a block: slots of a block
  Config cfg2 = config(2);
  cfg2.zero.reduce_bucket_size = static_cast<int64_t>(block_padded);
  const DevicePeak s1 = device_peak(config(1), dims), s2 = device_peak(cfg2, dims);
  const size_t slots = 2 * block_padded;
  // Half the expected saving as the margin: the allocator rounds each block up to 512 bytes.
  EXPECT_LT(s2.peak + (n - embeddings - block) * sizeof(float) / 2 + (padded - slots) * sizeof(float) / 2, s1.peak)
      << "stage 1 peak " << s1.peak << " B, stage 2 peak " << s2.peak << " B";
  EXPECT_EQ(s2.memory.grad_bytes, map.partition_numel() * sizeof(float));
  EXPECT_EQ(s1.memory.grad_bytes, n * sizeof(float));
  EXPECT_LE(s2.memory.comm_bytes, (slots + embeddings + block) * sizeof(float));
  EXPECT_GE(s2.memory.comm_bytes, (slots + embeddings) * sizeof(float));
  EXPECT_GE(s1.memory.comm_bytes, padded * sizeof(float));
}

// Stage 3 with a prefetch bucket of one block and at most three blocks live: beyond the partition the device holds
// activations and a few units (parameters and gradients), never the whole model. The activations are measured on
// stage 0's run of the same batch (its step allocates nothing else), so what stage 3 adds on top of them is its
// transient units, which must stay below the full model's parameters (a dozen blocks here) and agree with memory()'s
// comm term.
TEST(GpuZeroEngine, Stage3HoldsAFewUnitsNeverTheFullModel) {
  ZT_REQUIRE_GPU();
  const ModelDims dims{12, 4, 128, 97, 64};
  GPT2 layout(dims, false);
  const PartitionMap map(layout, 1);
  const size_t block = map.units()[1].padded, n = layout.num_params();
  Config cfg = config(3);
  cfg.zero.stage3_prefetch_bucket_size = static_cast<int64_t>(block);
  cfg.zero.stage3_max_live_parameters = static_cast<int64_t>(3 * block);
  const DevicePeak s3 = device_peak(cfg, dims), s0 = device_peak(config(0), dims);
  const size_t activations = s0.peak - s0.base;
  ASSERT_GT(s3.peak, s3.base + activations);
  const size_t transient = s3.peak - s3.base - activations;
  EXPECT_LT(transient, n * sizeof(float)) << "stage 3 held " << transient << " bytes beyond its partition";
  // At most: three live blocks and one fetched beyond them, the embeddings (held through backward for the tied
  // head), and the gradients of one block and of the embeddings.
  EXPECT_LT(transient, (5 * block + 2 * map.units()[0].padded) * sizeof(float));
  EXPECT_LE(transient, s3.memory.comm_bytes + 16 * cuda::CachingAllocator::kRound);
  // The base is the partition (fp32 master, Adam's two moments, the gradient partition) and the norm's scratch.
  EXPECT_LT(s3.base, s3.memory.model_state_bytes() + (size_t(1) << 20));
  EXPECT_EQ(s3.memory.model_state_bytes(), 16 * map.partition_numel());
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

// Buckets of 60000 elements over this model's units (blocks of 49984 elements, the embeddings 10304, the final
// LayerNorm 128): {final LayerNorm, block 2}, {block 1}, {embeddings}, each reduced while the backward of the units
// before it in the model goes on.
Config bucket_config(const Config& base, bool overlap) {
  Config cfg = base;
  cfg.zero.overlap_comm = overlap;
  cfg.zero.reduce_bucket_size = 60000;
  return cfg;
}

void check_buckets(int stage) {
  for (bool overlap : {true, false}) {
    SCOPED_TRACE("stage " + std::to_string(stage) + " in buckets, overlap_comm " + (overlap ? "true" : "false"));
    const Config cfg = bucket_config(config(stage), overlap);
    check_resume(cfg, true, check_matches_cpu(cfg));
    if (stage == 2) continue;  // stage 2 reduces in every backward, announced or not
    SCOPED_TRACE("last micro-batch not announced: reduced at the boundary");
    g_announce_last_micro_batch = false;
    check_matches_cpu(cfg);
    g_announce_last_micro_batch = true;
  }
}

TEST(GpuZeroEngine, Stage0ReducesInBucketsDuringBackward) {
  ZT_REQUIRE_GPU();
  check_buckets(0);
}

TEST(GpuZeroEngine, Stage1ReducesInBucketsDuringBackward) {
  ZT_REQUIRE_GPU();
  check_buckets(1);
}

TEST(GpuZeroEngine, Stage2ReducesInBucketsDuringBackward) {
  ZT_REQUIRE_GPU();
  check_buckets(2);
}

TEST(GpuZeroEngine, Bf16Stage2ReducesInBucketsDuringBackward) {
  ZT_REQUIRE_GPU();
  SCOPED_TRACE("bf16, stage 2 in buckets with overlap_comm");
  check_bf16(bucket_config(bf16_config(2), true));
}

TEST(GpuZeroEngine, Stage1OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_offload_stage(1);
}

TEST(GpuZeroEngine, Stage2OffloadMatchesCpuOffloadEngineAndResumes) {
  ZT_REQUIRE_GPU();
  check_offload_stage(2);
}

// SGD with momentum and weight decay (the sgd_update kernel, the momentum buffer as the engines' only state and
// checkpoint buffer) at every stage, against the CPU engine's SGD, and resumed.
TEST(GpuZeroEngine, SgdMatchesCpuEngineAndResumesAtEveryStage) {
  ZT_REQUIRE_GPU();
  for (int stage : {0, 1, 2, 3}) {
    SCOPED_TRACE("SGD stage " + std::to_string(stage));
    const Config cfg = sgd_config(stage);
    const Trained gpu = check_matches_cpu(cfg);
    EXPECT_EQ(gpu.state_names, (std::vector<std::string>{"master", "momentum_buffer"}));
    // the momentum buffer, and at stages 1-3 the fp32 master partition (stage 0 in fp32 updates the model's own)
    const size_t held =
        stage == 0 ? gpu.params.size() : PartitionMap(GPT2(kDims, false, GPT2Buffers::None), 1).partition_numel();
    EXPECT_EQ(gpu.memory.optimizer_bytes, (stage == 0 ? 1u : 2u) * held * sizeof(float));
    check_resume(cfg, true, gpu);
  }
}

// The GPU model with activation checkpointing (each block recomputed in its backward; at stage 3 between the unit's
// gather and release) against the CPU engine with checkpointing, at stages 0 and 3.
TEST(GpuZeroEngine, ActivationCheckpointingMatchesCpuEngineAtStages0And3) {
  ZT_REQUIRE_GPU();
  for (int stage : {0, 3}) {
    SCOPED_TRACE("activation checkpointing, stage " + std::to_string(stage));
    const Config cfg = checkpointing_config(stage);
    check_resume(cfg, true, check_matches_cpu(cfg));
  }
}

// Flash attention in training (the GPU model's online-softmax forward and its lse-based backward) against the CPU
// engine's reference attention: the same losses to 1e-5 over 5 steps, at stages 0 and 3.
TEST(GpuZeroEngine, FlashAttentionMatchesCpuEngineAtStages0And3) {
  ZT_REQUIRE_GPU();
  for (int stage : {0, 3}) {
    SCOPED_TRACE("flash attention, stage " + std::to_string(stage));
    Config cfg = config(stage);
    cfg.train.attention = TrainAttention::Flash;
    check_matches_cpu(cfg);
  }
}

}  // namespace
}  // namespace zt

namespace zt {
namespace {

std::string describe(const Config& cfg) {
  return "stage " + std::to_string(cfg.zero.stage) + " offload_optimizer " +
         offload_device_name(cfg.zero.offload_optimizer.device) + " offload_param " +
         offload_device_name(cfg.zero.offload_param.device);
}

// The harness of the tests above on the CPU engine (runs without a GPU): the export/import resume is exact there,
// in fp32 and bf16, with the optimizer on the device's side or offloaded.
TEST(GpuZeroEngineHarness, CpuEngineResumesExactly) {
  for (bool bf16 : {false, true}) {
    for (const Config& base :
         {config(0), config(1), config(2), config(3), offload_config(1, true), offload_config(2, true),
          offload_config(3, true), nvme_config(config(2)), nvme_config(config(3)),
          param_offload_config(offload_config(3, true), true), param_offload_config(nvme_config(config(3)), false),
          param_nvme_config(config(3))}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16, " : "fp32, ") + describe(base));
      Config cfg = base;
      cfg.bf16 = bf16;
      Trained full;
      EngineRun s(cfg, false);
      train_steps(cfg, s, 0, kSteps, full);
      check_resume(cfg, false, full);
    }
  }
}

// The same for the SGD and activation-checkpointing configs of the GPU tests.
TEST(GpuZeroEngineHarness, CpuEngineResumesExactlyWithSgdAndWithCheckpointing) {
  for (const Config& cfg : {sgd_config(0), sgd_config(1), sgd_config(3), checkpointing_config(0),
                            checkpointing_config(3)}) {
    SCOPED_TRACE(describe(cfg) + (cfg.optimizer.type == OptimizerType::SGD ? ", SGD" : ", checkpointing"));
    Trained full;
    EngineRun s(cfg, false);
    train_steps(cfg, s, 0, kSteps, full);
    if (cfg.optimizer.type == OptimizerType::SGD) {
      EXPECT_EQ(full.state_names, (std::vector<std::string>{"master", "momentum_buffer"}));
    }
    check_resume(cfg, false, full);
  }
}

TEST(GpuZeroEngineHarness, CpuStage3ResumesFromCpuStage1State) { check_stage3_resumes_from_cpu_stage1(false); }

// The fp16 test's choice of scale, on the CPU engine alone: the first step overflows and training resumes later.
TEST(GpuZeroEngineHarness, Fp16ScaleOverflowsTheFirstStepThenTrains) {
  for (const Config& cfg : {fp16_config_overflowing_first_step(0), fp16_config_overflowing_first_step(1),
                            fp16_config_overflowing_first_step(3),
                            offload_config(fp16_config_overflowing_first_step(1), true),
                            offload_config(fp16_config_overflowing_first_step(3), true)}) {
    SCOPED_TRACE(describe(cfg));
    const Trained run = train_fresh(cfg, false, kFp16Steps);
    EXPECT_TRUE(run.skipped[0]);
    EXPECT_FALSE(run.skipped.back());
    EXPECT_LT(run.loss_scales.back(), run.loss_scales.front());
  }
}

}  // namespace
}  // namespace zt
