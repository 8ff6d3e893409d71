// zerotrain plan: the ZeRO formulas against hand-computed values, the activation estimate, the agreement with
// --dry-run for the same stage/world/offload, and the recommendation for GPT-2 1.5B on 8 ranks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"
#include "engine/config/memory_estimate.h"
#include "engine/runtime/plan.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

struct Output {
  int exit_code = -1;
  std::string out;
};

Output run_zerotrain(const std::string& args) {
  const std::string cmd = std::string(ZT_BINARY_DIR) + "/zerotrain " + args + " 2>/dev/null";
  Output o;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return o;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
  const int st = ::pclose(p);
  o.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

// "  total:   123 bytes  (...)" -> 123
int64_t dry_run_value(const std::string& out, const std::string& label) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const size_t at = line.find(label);
    if (at != std::string::npos && line.find(" bytes") != std::string::npos)
      return std::stoll(line.substr(at + label.size()));
  }
  ADD_FAILURE() << "no '" << label << "' in dry-run output:\n" << out;
  return -1;
}

MemoryEstimateInput input(int64_t psi, int stage, int world, Precision p) {
  MemoryEstimateInput in;
  in.num_params = psi;
  in.stage = stage;
  in.world_size = world;
  in.precision = p;
  return in;
}

TEST(PlanFormulas, ModelStatesPerStageMatchHandComputedValues) {
  // Ψ = 1000 parameters on 4 ranks, Adam. Mixed precision: 2Ψ + 2Ψ + 12Ψ, partitioned stage by stage.
  const int64_t expect_bf16[4][3] = {{2000, 2000, 12000}, {2000, 2000, 3000}, {2000, 500, 3000}, {500, 500, 3000}};
  // fp32: 4Ψ + 4Ψ + 8Ψ (m, v); stages 1-2 keep an fp32 copy of their optimizer partition (12 bytes per element).
  const int64_t expect_fp32[4][3] = {{4000, 4000, 8000}, {4000, 4000, 3000}, {4000, 1000, 3000}, {1000, 1000, 2000}};
  for (int stage = 0; stage <= 3; ++stage) {
    ModelStateBytes b = estimate_model_state_bytes(input(1000, stage, 4, Precision::Bf16));
    EXPECT_EQ(b.params, expect_bf16[stage][0]) << "stage " << stage;
    EXPECT_EQ(b.grads, expect_bf16[stage][1]) << "stage " << stage;
    EXPECT_EQ(b.optimizer_states, expect_bf16[stage][2]) << "stage " << stage;
    EXPECT_EQ(b.total, b.params + b.grads + b.optimizer_states);
    EXPECT_EQ(b.device, b.total);
    b = estimate_model_state_bytes(input(1000, stage, 4, Precision::Fp32));
    EXPECT_EQ(b.params, expect_fp32[stage][0]) << "fp32 stage " << stage;
    EXPECT_EQ(b.grads, expect_fp32[stage][1]) << "fp32 stage " << stage;
    EXPECT_EQ(b.optimizer_states, expect_fp32[stage][2]) << "fp32 stage " << stage;
  }
  // Offload moves terms off the device: stage 3, optimizer to host, parameters to NVMe.
  MemoryEstimateInput in = input(1000, 3, 4, Precision::Bf16);
  in.optimizer_offload = OffloadDevice::Cpu;
  in.param_offload = OffloadDevice::Nvme;
  ModelStateBytes b = estimate_model_state_bytes(in);
  EXPECT_EQ(b.device, 500);
  EXPECT_EQ(b.host, 3000);
  EXPECT_EQ(b.nvme, 500);
}

TEST(PlanFormulas, ActivationEstimate) {
  ActivationEstimateInput in;
  in.model.n_layer = 2, in.model.n_head = 2, in.model.n_embd = 64, in.model.vocab_size = 256;
  in.micro_batch = 2, in.seq_len = 64, in.precision = Precision::Fp32;
  // per layer, 16-bit: B*T*C*34 + 5*a*B*T^2 = 278528 + 81920; fp32 doubles it.
  ActivationBytes a = estimate_activation_bytes(in);
  EXPECT_EQ(a.per_layer, 720896);
  EXPECT_EQ(a.layers, 2 * 720896);
  EXPECT_EQ(a.head, 2 * 2 * 64 * 256 * 4);
  EXPECT_EQ(a.total, a.layers + a.head);
  in.checkpointing = true;  // block inputs B*T*C*L*4 plus one layer
  EXPECT_EQ(estimate_activation_bytes(in).layers, 2 * 64 * 64 * 2 * 4 + 720896);
  in.precision = Precision::Bf16;
  in.checkpointing = false;
  EXPECT_EQ(estimate_activation_bytes(in).per_layer, 360448);
}

TEST(PlanFormulas, CommunicationAndRanking) {
  // A ring moves (N-1)/N of the volume per rank: 2Ψ·2 bytes at stages 0-2, 3Ψ·2 at stage 3.
  EXPECT_EQ(plan_comm_bytes(0, 1000, Precision::Bf16, 4), 3000);
  EXPECT_EQ(plan_comm_bytes(2, 1000, Precision::Bf16, 4), 3000);
  EXPECT_EQ(plan_comm_bytes(3, 1000, Precision::Bf16, 4), 4500);
  EXPECT_EQ(plan_comm_bytes(3, 1000, Precision::Fp32, 4), 9000);
  EXPECT_EQ(plan_comm_bytes(3, 1000, Precision::Fp32, 1), 0);
  const auto rows = plan_combinations();
  ASSERT_EQ(rows.size(), 16u);  // 1 + 3 + 3 + 9
  for (const auto& r : rows) {
    if (r.stage == 0) {
      EXPECT_EQ(r.optimizer_offload, OffloadDevice::None);
    }
    if (r.stage < 3) {
      EXPECT_EQ(r.param_offload, OffloadDevice::None);
    }
  }
  PlanRow s0, s3, s2cpu;
  s0.stage = 0, s0.comm_bytes = 3000;
  s3.stage = 3, s3.comm_bytes = 4500;
  s2cpu.stage = 2, s2cpu.comm_bytes = 3000, s2cpu.offload_cost = 1;
  EXPECT_TRUE(plan_row_faster(s0, s3));
  EXPECT_TRUE(plan_row_faster(s3, s2cpu));  // offloading costs more than stage 3's extra all-gather
}

TEST(PlanFormulas, SizesAndCounts) {
  EXPECT_EQ(parse_byte_size("x", "80GiB"), 80LL << 30);
  EXPECT_EQ(parse_byte_size("x", "16 gb"), 16000000000LL);
  EXPECT_EQ(parse_byte_size("x", "2TiB"), 2LL << 40);
  EXPECT_EQ(parse_byte_size("x", "4096"), 4096);
  EXPECT_THROW(parse_byte_size("x", "lots"), ConfigError);
  EXPECT_THROW(parse_byte_size("x", "12 parsecs"), ConfigError);
  EXPECT_EQ(parse_param_count("7e9"), 7000000000LL);
  EXPECT_EQ(parse_param_count("1.5B"), 1500000000LL);
  EXPECT_EQ(parse_param_count("124M"), 124000000LL);
  EXPECT_THROW(parse_param_count("0"), ConfigError);
}

// GPT-2 1.5B, bf16, micro batch 16 x 1024 tokens with activation checkpointing, on 8 ranks of one node.
Config gpt2_xl_config() {
  return parse_config_text(R"({"train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 1,
      "bf16": {"enabled": true}, "zero_optimization": {"stage": 0},
      "activation_checkpointing": {"partition_activations": false},
      "model": {"preset": "gpt2-1558M"}, "data": {"seq_len": 1024}})",
                           "gpt2_xl");
}

PlanOptions eight_ranks(int64_t device) {
  PlanOptions o;
  o.nproc_per_node = 8;
  o.device_memory = device;
  o.host_memory = 1LL << 40;
  o.nvme_free = 4LL << 40;
  return o;
}

TEST(Plan, Gpt2XlOn80GiBRecommendsAStageWithoutOffload) {
  Config cfg = gpt2_xl_config();
  ASSERT_TRUE(cfg.activation_checkpointing.enabled);
  Plan plan = make_plan(cfg, eight_ranks(80LL << 30));
  EXPECT_EQ(plan.num_params, 1557611200);
  ASSERT_GE(plan.recommended, 0);
  const PlanRow& r = plan.rows[static_cast<size_t>(plan.recommended)];
  EXPECT_EQ(r.optimizer_offload, OffloadDevice::None);
  EXPECT_EQ(r.param_offload, OffloadDevice::None);
  EXPECT_EQ(r.stage, 0);  // fits, and has the fewest bytes to communicate
  EXPECT_NE(format_plan(plan).find("recommended: stage 0, offload none"), std::string::npos) << format_plan(plan);
}

TEST(Plan, Gpt2XlOn16GiBRecommendsOffload) {
  Plan plan = make_plan(gpt2_xl_config(), eight_ranks(16LL << 30));
  ASSERT_GE(plan.recommended, 0) << format_plan(plan);
  const PlanRow& r = plan.rows[static_cast<size_t>(plan.recommended)];
  EXPECT_TRUE(r.optimizer_offload != OffloadDevice::None || r.param_offload != OffloadDevice::None)
      << format_plan(plan);
  for (const auto& row : plan.rows)
    if (row.optimizer_offload == OffloadDevice::None && row.param_offload == OffloadDevice::None) {
      EXPECT_FALSE(row.fits_device) << "stage " << row.stage << " fits without offload:\n" << format_plan(plan);
    }
  EXPECT_LE(r.device, 16LL << 30);
  // With too little host memory for the offloaded optimizer, it goes to NVMe.
  PlanOptions o = eight_ranks(16LL << 30);
  o.host_memory = 8LL << 30;
  Plan small_host = make_plan(gpt2_xl_config(), o);
  ASSERT_GE(small_host.recommended, 0) << format_plan(small_host);
  EXPECT_EQ(small_host.rows[static_cast<size_t>(small_host.recommended)].optimizer_offload, OffloadDevice::Nvme)
      << format_plan(small_host);
  // Nothing fits in 1 GiB: the activations alone are larger.
  Plan tiny = make_plan(gpt2_xl_config(), eight_ranks(1LL << 30));
  EXPECT_EQ(tiny.recommended, -1);
  EXPECT_NE(format_plan(tiny).find("recommended: none fits"), std::string::npos);
}

TEST(Plan, ParamsOverrideKeepsTheConfigDimsForActivations) {
  Config cfg = gpt2_xl_config();
  PlanOptions o = eight_ranks(80LL << 30);
  o.num_params = 7000000000LL;
  Plan plan = make_plan(cfg, o);
  EXPECT_EQ(plan.num_params, 7000000000LL);
  EXPECT_EQ(plan.rows[0].states.total, 16 * 7000000000LL);
  EXPECT_EQ(plan.rows[0].activations, make_plan(cfg, eight_ranks(80LL << 30)).rows[0].activations);
  EXPECT_NE(format_plan(plan).find("--params"), std::string::npos);
}

// The plan's model-state numbers are the --dry-run estimate for the same config, stage, world size and offload.
TEST(Plan, EqualsDryRunForEachStageAndOffload) {
  const fs::path config = fs::temp_directory_path() / ("zt_plan_test_" + std::to_string(::getpid()) + ".json");
  std::ofstream(config) << R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
      "bf16": {"enabled": true}, "model": {"preset": "gpt2-124M"}})";
  struct Case {
    int stage;
    const char* opt;
    const char* param;
    int world;
  };
  const Case cases[] = {{0, "none", "none", 2}, {1, "none", "none", 4}, {2, "cpu", "none", 2},
                        {3, "none", "none", 8}, {3, "cpu", "cpu", 4},   {3, "nvme", "nvme", 2}};
  for (const Case& c : cases) {
    const std::string ov = " zero_optimization.stage=" + std::to_string(c.stage) +
                           " zero_optimization.offload_optimizer.device=" + c.opt +
                           " zero_optimization.offload_param.device=" + c.param +
                           " zero_optimization.offload_optimizer.nvme_path=/tmp" +
                           " zero_optimization.offload_param.nvme_path=/tmp";
    Output dry = run_zerotrain("--config " + config.string() + ov + " --dry-run --nproc_per_node " + std::to_string(c.world));
    ASSERT_EQ(dry.exit_code, 0) << dry.out;
    Config cfg = parse_config_file(config.string());
    PlanOptions o;
    o.nproc_per_node = c.world;
    o.device_memory = 80LL << 30;
    o.host_memory = 1LL << 40;
    o.nvme_free = 1LL << 40;
    Plan plan = make_plan(cfg, o);
    bool found = false;
    for (const PlanRow& r : plan.rows) {
      if (r.stage != c.stage || std::string(offload_device_name(r.optimizer_offload)) != c.opt ||
          std::string(offload_device_name(r.param_offload)) != c.param)
        continue;
      found = true;
      SCOPED_TRACE(std::string("stage ") + std::to_string(c.stage) + " " + c.opt + "/" + c.param);
      EXPECT_EQ(r.states.params, dry_run_value(dry.out, "parameters:"));
      EXPECT_EQ(r.states.grads, dry_run_value(dry.out, "gradients:"));
      EXPECT_EQ(r.states.optimizer_states, dry_run_value(dry.out, "optimizer states:"));
      EXPECT_EQ(r.states.total, dry_run_value(dry.out, "total:"));
      EXPECT_EQ(r.states.device, dry_run_value(dry.out, "on device:"));
      EXPECT_EQ(r.host, dry_run_value(dry.out, "on host:"));
      EXPECT_EQ(r.nvme, dry_run_value(dry.out, "on nvme:"));
    }
    EXPECT_TRUE(found);
  }
  fs::remove(config);
}

TEST(Plan, CommandPrintsTableAndRecommendation) {
  const std::string config = std::string(ZT_SOURCE_DIR) + "/configs/tiny_cpu.json";
  Output o = run_zerotrain("plan --config " + config +
                           " --model gpt2-1558M --nproc_per_node 8 --device-memory 80GiB --host-memory 1TiB "
                           "--nvme-free 2TiB");
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_NE(o.out.find("| stage |"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("1557611200 parameters"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("\nrecommended: stage "), std::string::npos) << o.out;
  int rows = 0;
  std::istringstream in(o.out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("| ", 0) == 0 && line.find("| stage") == std::string::npos) rows++;
  EXPECT_EQ(rows, 16);
  Output bad = run_zerotrain("plan --config " + config + " --device-memory lots");
  EXPECT_EQ(bad.exit_code, 2);
}

}  // namespace
}  // namespace zt
