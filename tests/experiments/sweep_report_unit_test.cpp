// The pure parts of sweep and report: grid parsing, the cross product, run names, error lines, run summaries and CSV.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/runtime/report.h"
#include "engine/runtime/sweep.h"
#include "launcher/cli.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

TEST(Sweep, GridValuesSplitOnTopLevelCommasOnly) {
  SweepAxis a = parse_sweep_axis("zero_optimization.stage=0,1,2");
  EXPECT_EQ(a.key, "zero_optimization.stage");
  EXPECT_EQ(a.values, (std::vector<std::string>{"0", "1", "2"}));
  a = parse_sweep_axis("optimizer.params.betas=[0.9,0.95],[0.9,0.99]");
  EXPECT_EQ(a.values, (std::vector<std::string>{"[0.9,0.95]", "[0.9,0.99]"}));
  a = parse_sweep_axis(R"(x={"a":1,"b":2},"s,t")");
  EXPECT_EQ(a.values, (std::vector<std::string>{R"({"a":1,"b":2})", R"("s,t")"}));
  EXPECT_THROW(parse_sweep_axis("stage"), ConfigError);
  EXPECT_THROW(parse_sweep_axis("=1,2"), ConfigError);
  EXPECT_THROW(parse_sweep_axis("stage=1,,2"), ConfigError);
}

TEST(Sweep, CrossProductFirstAxisSlowest) {
  auto points = sweep_points({parse_sweep_axis("a=1,2"), parse_sweep_axis("b=x,y,z")});
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0], (std::vector<std::string>{"a=1", "b=x"}));
  EXPECT_EQ(points[1], (std::vector<std::string>{"a=1", "b=y"}));
  EXPECT_EQ(points[5], (std::vector<std::string>{"a=2", "b=z"}));
}

TEST(Sweep, RunNamesAreFilesystemSafeAndDistinct) {
  EXPECT_EQ(sweep_run_name({"zero_optimization.stage=2", "train_micro_batch_size_per_gpu=4"}),
            "zero_optimization.stage=2__train_micro_batch_size_per_gpu=4");
  EXPECT_EQ(sweep_run_name({"data.train=/x/*.bin"}), "data.train=_x__.bin");
  EXPECT_EQ(sweep_run_name({"optimizer.params.betas=[0.9,0.95]"}), "optimizer.params.betas=_0.9_0.95_");
  EXPECT_EQ(sweep_run_name({}), "base");
  const std::string long_a = sweep_run_name({"k=" + std::string(200, 'a') + "1"});
  const std::string long_b = sweep_run_name({"k=" + std::string(200, 'a') + "2"});
  EXPECT_LE(long_a.size(), 120u);
  EXPECT_NE(long_a, long_b);
}

TEST(Sweep, LastErrorLineFindsPrefixedErrors) {
  EXPECT_EQ(last_error_line("info\nzerotrain: error: first\n[rank 1] zerotrain: error: second\nbye\n"), "second");
  EXPECT_EQ(last_error_line("all good\n"), "");
}

TEST(Cli, SubcommandOptions) {
  const char* sweep[] = {"zerotrain", "sweep", "--config", "c.json", "--grid", "a=1,2", "--grid=b=3",
                         "--out", "o", "x.y=1"};
  CliArgs s = parse_cli(10, sweep);
  EXPECT_EQ(s.subcommand, "sweep");
  EXPECT_EQ(s.grids, (std::vector<std::string>{"a=1,2", "b=3"}));
  EXPECT_EQ(s.out_dir, "o");
  EXPECT_EQ(s.overrides, (std::vector<std::string>{"x.y=1"}));
  const char* report[] = {"zerotrain", "report", "d1", "runs/stage=1", "--plots", "p", "--csv", "r.csv"};
  CliArgs r = parse_cli(8, report);
  EXPECT_EQ(r.report_dirs, (std::vector<std::string>{"d1", "runs/stage=1"}));
  EXPECT_EQ(r.plots_dir, "p");
  EXPECT_EQ(r.csv_path, "r.csv");
  const char* plan[] = {"zerotrain", "plan", "--config", "c.json", "--model", "gpt2-1558M", "--device-memory",
                        "80GiB", "--host-memory=1TiB", "--nvme-free", "2TiB"};
  CliArgs p = parse_cli(11, plan);
  EXPECT_EQ(p.plan_model, "gpt2-1558M");
  EXPECT_EQ(p.device_memory, "80GiB");
  EXPECT_EQ(p.host_memory, "1TiB");
  EXPECT_EQ(p.nvme_free, "2TiB");
  const char* both[] = {"zerotrain", "plan", "--config", "c.json", "--model", "gpt2-tiny", "--params", "7e9"};
  EXPECT_THROW(parse_cli(8, both), ConfigError);
  const char* wrong[] = {"zerotrain", "--config", "c.json", "--grid", "a=1"};
  EXPECT_THROW(parse_cli(5, wrong), ConfigError);  // sweep options belong to sweep
}

TEST(Report, SummarizesMetricsAndWritesCsv) {
  const fs::path dir = fs::temp_directory_path() / ("zt_report_unit_" + std::to_string(::getpid())) / "run,1";
  fs::create_directories(dir);
  {
    std::ofstream m(dir / "metrics.jsonl");
    m << R"({"type":"run","world_size":2,"resumed_from_step":0,"config":{"train":{"max_steps":3}}})" << "\n"
      << R"({"type":"step","step":1,"loss":5.0,"tokens_per_s":100,"ms_per_step":10,"model_state_bytes":2097152,"peak_rss_bytes":1048576})"
      << "\n"
      << R"({"type":"step","step":2,"loss":4.0,"tokens_per_s":300,"ms_per_step":30,"model_state_bytes":2097152,"peak_rss_bytes":3145728})"
      << "\n"
      << R"({"type":"eval","step":2,"val_loss":4.5})" << "\n"
      << R"({"type":"step","step":3,"loss":3.5,"tokens_per_s":200,"ms_per_step":20,"model_state_bytes":2097152,"peak_rss_bytes":2097152})"
      << "\n"
      << R"({"type":"eval","step":3,"val_loss":4.25})" << "\n"
      << R"({"type":"st)";  // a line cut by a crash is ignored
  }
  RunSummary r = summarize_run(dir.string());
  EXPECT_EQ(r.name, "run,1");
  EXPECT_EQ(r.status, "finished");
  EXPECT_EQ(r.world_size, 2);
  EXPECT_EQ(r.steps, 3);
  EXPECT_DOUBLE_EQ(r.final_loss, 3.5);
  EXPECT_DOUBLE_EQ(r.best_val_loss, 4.25);
  EXPECT_DOUBLE_EQ(r.median_tokens_per_s, 200);
  EXPECT_DOUBLE_EQ(r.median_ms_per_step, 20);
  EXPECT_EQ(r.peak_rss_bytes, 3145728);
  ASSERT_EQ(r.curve_tokens.size(), 3u);
  EXPECT_DOUBLE_EQ(r.curve_tokens[2], 1.0 + 9.0 + 4.0);  // tokens/s x seconds, summed
  const std::string csv = report_csv({r});
  EXPECT_NE(csv.find("\n\"run,1\",,finished,2,3,3.5000,4.2500,200,20.0,2.0,3.0,\n"), std::string::npos) << csv;
  EXPECT_EQ(find_run_dirs(dir.parent_path().string()), (std::vector<std::string>{dir.string()}));
  fs::remove_all(dir.parent_path());
  EXPECT_THROW(find_run_dirs(dir.parent_path().string()), ConfigError);
  // Without status.json a sweep run's overrides come from its name.
  const fs::path named = fs::temp_directory_path() / ("zt_report_unit_" + std::to_string(::getpid())) /
                         "zero_optimization.stage=2__train_micro_batch_size_per_gpu=4";
  fs::create_directories(named);
  std::ofstream(named / "metrics.jsonl") << "";
  EXPECT_EQ(summarize_run(named.string()).overrides, "zero_optimization.stage=2 train_micro_batch_size_per_gpu=4");
  fs::remove_all(named.parent_path());
}

}  // namespace
}  // namespace zt
