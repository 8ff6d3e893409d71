// The zerotrain binary end to end: exit codes, --help/--version, --dry-run on every shipped config, and one-line
// errors naming the JSON path for bad configs and bad usage.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "launcher/cli.h"
#include "engine/base/error.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

struct ProcessResult {
  int exit_code = -1;
  std::string out, err;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string quote(const std::string& s) {
  std::ostringstream q;
  q << '\'';
  for (char c : s) {
    if (c == '\'')
      q << "'\\''";
    else
      q << c;
  }
  q << '\'';
  return q.str();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zt_cli_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  ProcessResult zerotrain(const std::vector<std::string>& args) {
    fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    std::ostringstream cmd;
    cmd << quote(std::string(ZT_BINARY_DIR) + "/zerotrain");
    for (const auto& a : args) cmd << ' ' << quote(a);
    cmd << " >" << quote(out.string()) << " 2>" << quote(err.string());
    int status = std::system(cmd.str().c_str());
    ProcessResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  std::string write_config(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  // The last line of stderr must be the one error line.
  static std::string error_line(const ProcessResult& r) {
    std::string e = r.err;
    while (!e.empty() && e.back() == '\n') e.pop_back();
    size_t nl = e.rfind('\n');
    return nl == std::string::npos ? e : e.substr(nl + 1);
  }

  fs::path dir_;
};

TEST_F(CliTest, HelpAndVersion) {
  ProcessResult help = zerotrain({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("usage: zerotrain --config FILE"), std::string::npos);
  EXPECT_NE(help.out.find("--dry-run"), std::string::npos);
  ProcessResult version = zerotrain({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, std::string("zerotrain ") + ZT_VERSION + "\n");
}

TEST_F(CliTest, DryRunOnEveryShippedConfigPrintsTheEstimate) {
  int seen = 0;
  for (const auto& entry : fs::directory_iterator(std::string(ZT_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    ProcessResult r = zerotrain({"--config", entry.path().string(), "--dry-run"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("memory estimate per rank"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("optimizer states:"), std::string::npos);
    EXPECT_NE(r.out.find("\"zero_optimization\""), std::string::npos);
    seen++;
  }
  EXPECT_EQ(seen, 8);
}

TEST_F(CliTest, DryRunEstimateFollowsStageWorldSizeAndOverrides) {
  // gpt2-tiny has 120576 parameters; fp32 stage 3 over 4 ranks: 4 * 30144 bytes of parameters per rank.
  ProcessResult r = zerotrain({"--config", std::string(ZT_SOURCE_DIR) + "/configs/ds_zero_stage_0.json", "--dry-run",
                     "zero_optimization.stage=3", "world_size=4", "train_batch_size=32"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("120576 parameters, ZeRO stage 3, world size 4, fp32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters:                  120576 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("optimizer states:            241152 bytes"), std::string::npos) << r.out;
}

TEST_F(CliTest, WorldSizeFromLauncherFlagsWhenTheConfigHasNone) {
  std::string cfg = write_config("noworld.json", R"({"train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 1}})");
  ProcessResult r = zerotrain({"--config", cfg, "--dry-run", "--nproc_per_node", "2", "--nnodes=3", "--node_rank", "1",
                     "--master_addr", "10.0.0.1", "--master_port", "29501"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("world size 6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train_batch_size 12 = train_micro_batch_size_per_gpu 2"), std::string::npos) << r.out;
}

TEST_F(CliTest, PrintConfigPrintsJsonAndWarnings) {
  std::string cfg = write_config("warn.json", R"({"train_batch_size": 4, "tensorboard": {"enabled": true},
      "aio": {"thread_count": 2}})");
  ProcessResult r = zerotrain({"--config", cfg, "--print-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"intra_op_parallelism\": 2"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("aio.thread_count is deprecated; use aio.intra_op_parallelism instead"), std::string::npos);
  EXPECT_NE(r.err.find("tensorboard is a DeepSpeed section that zerotrain ignores"), std::string::npos);
}

TEST_F(CliTest, TrainingEntryIsReached) {
  const std::string out = ::testing::TempDir() + "zt_cli_training_entry";
  ProcessResult r = zerotrain({"--config", std::string(ZT_SOURCE_DIR) + "/configs/tiny_cpu.json", "train.max_steps=2",
                               "train.save_dir=" + out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("done: 2 steps"), std::string::npos) << r.err;
}

// The shipped tiny config with two ranks: they rendezvous, allreduce their gradients and exit cleanly (its batch
// is given per rank, so the global batch follows the launch's world size).
TEST_F(CliTest, TinyConfigWithTwoRanksTrainsAndExitsCleanly) {
  const std::string out = ::testing::TempDir() + "zt_cli_two_ranks";
  ProcessResult r = zerotrain({"--config", std::string(ZT_SOURCE_DIR) + "/configs/tiny_cpu.json", "--nproc_per_node",
                               "2", "train.max_steps=3", "train.save_dir=" + out});
  const std::string all = r.out + r.err;
  EXPECT_EQ(r.exit_code, 0) << all;
  EXPECT_NE(all.find("world size 2, batch 16 = micro 8 x accumulation 1 x ranks 2"), std::string::npos) << all;
  EXPECT_NE(all.find("[rank 0]"), std::string::npos) << all;
  EXPECT_NE(all.find("[rank 1]"), std::string::npos) << all;
  EXPECT_NE(all.find("done: 3 steps"), std::string::npos) << all;
}

struct BadConfig {
  const char* text;
  const char* message;  // the error line after "zerotrain: error: <file>: "
};

TEST_F(CliTest, BadConfigsExit2NamingTheJsonPath) {
  const BadConfig cases[] = {
      {R"({"train_batch_size": 8, "zero_optimization": {"stgae": 2}})",
       "unknown key 'zero_optimization.stgae' (did you mean 'zero_optimization.stage'?)"},
      {R"({"train_batch_size": 8, "zero_optimization": {"stage": 4}})",
       "zero_optimization.stage: expected an integer in [0, 3], found 4 (integer)"},
      {R"({"train_batch_size": 8, "zero_optimization": {"stage": 3, "reduce_bucket_size": -1}})",
       "zero_optimization.reduce_bucket_size: expected a non-negative integer, found -1 (integer)"},
      {R"({"train_batch_size": 8, "gradient_clipping": "high"})",
       "gradient_clipping: expected a number >= 0, found \"high\" (string)"},
      {R"({"train_batch_size": 8, "zero_optimization": {"stage": 1, "offload_param": {"device": "cpu"}}})",
       "zero_optimization.offload_param.device is \"cpu\" but offloading parameters needs zero_optimization.stage 3 "
       "(found stage 1)"},
      {R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2,
           "world_size": 2})",
       "batch sizes disagree: train_batch_size 32 != train_micro_batch_size_per_gpu 4 * gradient_accumulation_steps 2 "
       "* world_size 2 = 16"},
      {"{\n \"train_batch_size\": 8\n \"steps_per_print\": 1}", "invalid JSON at line 3, column 18: syntax error while parsing object"},
  };
  int i = 0;
  for (const auto& c : cases) {
    std::string path = write_config("bad" + std::to_string(i++) + ".json", c.text);
    ProcessResult r = zerotrain({"--config", path, "--dry-run"});
    EXPECT_EQ(r.exit_code, 2) << c.text;
    std::string expected = "zerotrain: error: " + path + ": " + c.message;
    EXPECT_EQ(error_line(r).substr(0, expected.size()), expected) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(CliTest, BatchMismatchForTheLaunchWorldSizeExits2) {
  std::string cfg = write_config("b.json", R"({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 4})");
  ProcessResult r = zerotrain({"--config", cfg, "--dry-run", "--nproc_per_node", "4"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(error_line(r), "zerotrain: error: " + cfg +
                               ": batch sizes disagree: train_batch_size 8 != train_micro_batch_size_per_gpu 4 * "
                               "gradient_accumulation_steps 0 * world_size 4 = 0 (gradient_accumulation_steps "
                               "derived as 8 / 4 / 4)");
}

TEST_F(CliTest, UsageErrorsExit2) {
  ProcessResult missing = zerotrain({"--dry-run"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(error_line(missing), "zerotrain: error: missing --config FILE (see zerotrain --help)");
  ProcessResult unknown = zerotrain({"--config", "x.json", "--frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(error_line(unknown), "zerotrain: error: unknown option '--frobnicate' (see zerotrain --help)");
  ProcessResult stray = zerotrain({"--config", "x.json", "stray"});
  EXPECT_EQ(stray.exit_code, 2);
  EXPECT_EQ(error_line(stray),
            "zerotrain: error: unexpected argument 'stray' (config overrides are written key.path=value)");
  ProcessResult no_value = zerotrain({"--config"});
  EXPECT_EQ(no_value.exit_code, 2);
  EXPECT_EQ(error_line(no_value), "zerotrain: error: --config: missing value");
  ProcessResult bad_int = zerotrain({"--config", "x.json", "--nproc_per_node", "two"});
  EXPECT_EQ(bad_int.exit_code, 2);
  EXPECT_EQ(error_line(bad_int), "zerotrain: error: --nproc_per_node: expected an integer in [1, 65536], got 'two'");
  ProcessResult plan = zerotrain({"plan", "--config", "x.json"});
  EXPECT_EQ(plan.exit_code, 2);
  EXPECT_EQ(error_line(plan), "zerotrain: error: x.json: cannot open config file");
  ProcessResult wrong_flag = zerotrain({"plan", "--config", "x.json", "--grid", "a=1"});
  EXPECT_EQ(wrong_flag.exit_code, 2);
  EXPECT_EQ(error_line(wrong_flag), "zerotrain: error: unknown option '--grid' for zerotrain plan (see zerotrain --help)");
}

TEST_F(CliTest, UnreadableOrMissingConfigFileExits2) {
  ProcessResult missing = zerotrain({"--config", (dir_ / "nope.json").string(), "--dry-run"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(error_line(missing), "zerotrain: error: " + (dir_ / "nope.json").string() + ": cannot open config file");
  ProcessResult directory = zerotrain({"--config", dir_.string(), "--dry-run"});
  EXPECT_EQ(directory.exit_code, 2);
  EXPECT_EQ(error_line(directory), "zerotrain: error: " + dir_.string() + ": cannot read config file: is a directory");
  if (geteuid() != 0) {  // root reads any file
    std::string path = write_config("locked.json", "{}");
    fs::permissions(path, fs::perms::none);
    ProcessResult locked = zerotrain({"--config", path, "--dry-run"});
    EXPECT_EQ(locked.exit_code, 2);
    EXPECT_EQ(error_line(locked), "zerotrain: error: " + path + ": cannot open config file");
  }
}

TEST_F(CliTest, BadOverrideExits2) {
  ProcessResult r = zerotrain({"--config", std::string(ZT_SOURCE_DIR) + "/configs/tiny_cpu.json", "--dry-run",
                     "train.max_stepz=5"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(error_line(r).find("unknown key 'train.max_stepz' (did you mean 'train.max_steps'?)"), std::string::npos);
}

// parse_cli in-process, for the stored launcher options.
TEST(ParseCli, StoresLauncherOptionsAndOverrides) {
  const char* argv[] = {"zerotrain", "--config=c.json", "a.b=1",           "--nproc_per_node=2", "--nnodes", "2",
                        "--node_rank", "1",           "--master_addr", "host", "--master_port=1234", "x=y"};
  CliArgs a = parse_cli(12, argv);
  EXPECT_EQ(a.config_path, "c.json");
  EXPECT_EQ(a.overrides, (std::vector<std::string>{"a.b=1", "x=y"}));
  EXPECT_EQ(a.nproc_per_node, 2);
  EXPECT_EQ(a.nnodes, 2);
  EXPECT_EQ(a.node_rank, 1);
  EXPECT_EQ(a.master_addr, "host");
  EXPECT_EQ(a.master_port, 1234);
  EXPECT_EQ(cli_world_size(0, a), 4);
  EXPECT_EQ(cli_world_size(3, a), 4);  // the launch flags win over the config's world_size
  CliArgs no_flags = parse_cli(2, argv);
  EXPECT_EQ(cli_world_size(3, no_flags), 3);
  const char* bad_rank[] = {"zerotrain", "--nnodes", "2", "--node_rank", "2"};
  EXPECT_THROW(parse_cli(5, bad_rank), ConfigError);
}

}  // namespace
}  // namespace zt
