// Every error path of the parser, with the exact messages.
#include "tests/config/config_test_util.h"

namespace zt {
namespace {

using test::config_error;
using test::with_batch;

TEST(ConfigErrors, UnknownTopLevelKeySuggestsTheClosest) {
  EXPECT_EQ(config_error(with_batch("\"gradient_clippin\": 1.0")),
            "test.json: unknown key 'gradient_clippin' (did you mean 'gradient_clipping'?)");
}

TEST(ConfigErrors, TypoInsideASectionNamesTheFullPath) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 2, "reduce_bucket_sise": 5e8})")),
            "test.json: unknown key 'zero_optimization.reduce_bucket_sise' (did you mean "
            "'zero_optimization.reduce_bucket_size'?)");
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 3, "offload_param": {"devise": "cpu"}})")),
            "test.json: unknown key 'zero_optimization.offload_param.devise' (did you mean "
            "'zero_optimization.offload_param.device'?)");
  EXPECT_EQ(config_error(with_batch(R"("model": {"n_layers": 4})")),
            "test.json: unknown key 'model.n_layers' (did you mean 'model.n_layer'?)");
  EXPECT_EQ(config_error(with_batch(R"("train": {"max_step": 4})")),
            "test.json: unknown key 'train.max_step' (did you mean 'train.max_steps'?)");
}

TEST(ConfigErrors, WrongTypeNamesPathValueAndExpectation) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": "two"})")),
            "test.json: zero_optimization.stage: expected an integer in [0, 3], found \"two\" (string)");
  EXPECT_EQ(config_error(with_batch(R"("wall_clock_breakdown": 1)")),
            "test.json: wall_clock_breakdown: expected true or false, found 1 (integer)");
  EXPECT_EQ(config_error(with_batch(R"("optimizer": {"type": "AdamW", "params": {"lr": "fast"}})")),
            "test.json: optimizer.params.lr: expected a number >= 0, found \"fast\" (string)");
  EXPECT_EQ(config_error(with_batch(R"("fp16": [true])")),
            "test.json: fp16: expected a JSON object, found [true] (array)");
  EXPECT_EQ(config_error(with_batch(R"("data": {"train": [1, 2]})")),
            "test.json: data.train: expected a string or a list of strings, found [1,2] (array)");
}

TEST(ConfigErrors, NegativeBucketSize) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 2, "reduce_bucket_size": -5})")),
            "test.json: zero_optimization.reduce_bucket_size: expected a non-negative integer, found -5 (integer)");
}

TEST(ConfigErrors, NonIntegralFloatForAnIntegerField) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"allgather_bucket_size": 2.5})")),
            "test.json: zero_optimization.allgather_bucket_size: expected a non-negative integer, found 2.5 (number)");
}

TEST(ConfigErrors, Stage4) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 4})")),
            "test.json: zero_optimization.stage: expected an integer in [0, 3], found 4 (integer)");
}

TEST(ConfigErrors, OffloadParamBelowStage3) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}})")),
            "test.json: zero_optimization.offload_param.device is \"cpu\" but offloading parameters needs "
            "zero_optimization.stage 3 (found stage 2)");
}

TEST(ConfigErrors, OffloadOptimizerAtStage0) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"offload_optimizer": {"device": "cpu"}})")),
            "test.json: zero_optimization.offload_optimizer.device is \"cpu\" but offloading the optimizer needs "
            "zero_optimization.stage >= 1 (found stage 0)");
}

TEST(ConfigErrors, NvmeNeedsPath) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}})")),
            "test.json: zero_optimization.offload_param.nvme_path: missing; device \"nvme\" needs a path");
  EXPECT_EQ(
      config_error(with_batch(R"("zero_optimization": {"stage": 1, "offload_optimizer": {"device": "nvme"}})")),
      "test.json: zero_optimization.offload_optimizer.nvme_path: missing; device \"nvme\" needs a path");
}

TEST(ConfigErrors, BadOffloadDevice) {
  EXPECT_EQ(config_error(with_batch(R"("zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}})")),
            "test.json: zero_optimization.offload_param.device: expected one of \"none\", \"cpu\", \"nvme\", found "
            "\"gpu\" (string)");
}

TEST(ConfigErrors, Fp16AndBf16Together) {
  EXPECT_EQ(config_error(with_batch(R"("fp16": {"enabled": true}, "bf16": {"enabled": true})")),
            "test.json: fp16.enabled and bf16.enabled are both true; enable at most one");
}

TEST(ConfigErrors, ModelShapeRules) {
  EXPECT_EQ(config_error(with_batch(R"("model": {"n_head": 3, "n_embd": 64})")),
            "test.json: model.n_embd: 64 is not divisible by model.n_head 3");
  EXPECT_EQ(config_error(with_batch(R"("data": {"seq_len": 128})")),
            "test.json: data.seq_len: 128 is larger than model.block_size 64");
  EXPECT_EQ(config_error(with_batch(R"("model": {"preset": "gpt2-xl"})")),
            "test.json: model.preset: expected one of \"gpt2-tiny\", \"gpt2-124M\", \"gpt2-350M\", \"gpt2-774M\", "
            "\"gpt2-1558M\", found \"gpt2-xl\" (string)");
  EXPECT_EQ(config_error(with_batch(R"("model": {"vocab_size": 70000})")),
            "test.json: model.vocab_size: expected an integer in [1, 65536], found 70000 (integer)");
}

TEST(ConfigErrors, UnsupportedOptimizerAndScheduler) {
  EXPECT_EQ(config_error(with_batch(R"("optimizer": {"type": "Lamb"})")),
            "test.json: optimizer.type: expected one of \"Adam\", \"AdamW\", \"SGD\", found \"Lamb\" (string)");
  EXPECT_EQ(config_error(with_batch(R"("scheduler": {"type": "OneCycle"})")),
            "test.json: scheduler.type: expected one of \"WarmupLR\", \"WarmupDecayLR\", \"WarmupCosineLR\", found "
            "\"OneCycle\" (string)");
  EXPECT_EQ(config_error(with_batch(R"("optimizer": {"type": "Adam", "params": {"betas": [0.9]}})")),
            "test.json: optimizer.params.betas: expected a list of two numbers in [0, 1), found [0.9] (array)");
}

TEST(ConfigErrors, InvalidJsonReportsLineAndColumn) {
  std::string msg = config_error("{\n  \"train_batch_size\": 8,\n  \"steps_per_print\": ,\n}");
  EXPECT_EQ(msg.rfind("test.json: invalid JSON at line 3, column 22: ", 0), 0u) << msg;
  std::string trailing = config_error("{\"a\": 1,\n}");
  EXPECT_EQ(trailing.rfind("test.json: invalid JSON at line 2, column 1: ", 0), 0u) << trailing;
}

TEST(ConfigErrors, NumberOverflowIsInvalidJson) {
  EXPECT_EQ(config_error(with_batch("\"gradient_clipping\": 2e608")),
            "test.json: invalid JSON: number overflow parsing '2e608'");
}

TEST(ConfigErrors, OverrideValueMustBeUtf8) {
  EXPECT_EQ(config_error(with_batch(""), {"data.train=\xff\xfe"}),
            "test.json: override 'data.train=...': the value is not valid UTF-8");
}

TEST(ConfigErrors, TopLevelMustBeAnObject) {
  EXPECT_EQ(config_error("[1, 2]"), "test.json: top level: expected a JSON object, found [1,2] (array)");
}

TEST(ConfigErrors, NoBatchSize) {
  EXPECT_EQ(config_error("{\"gradient_accumulation_steps\": 2}"),
            "test.json: train_batch_size: either train_batch_size or train_micro_batch_size_per_gpu must be given");
  EXPECT_EQ(config_error("{\"train_batch_size\": 0}"),
            "test.json: train_batch_size: expected a positive integer, found 0 (integer)");
}

TEST(ConfigErrors, BatchDisagreesWithConfigWorldSize) {
  EXPECT_EQ(config_error(R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4,
                             "gradient_accumulation_steps": 2, "world_size": 2})"),
            "test.json: batch sizes disagree: train_batch_size 32 != train_micro_batch_size_per_gpu 4 * "
            "gradient_accumulation_steps 2 * world_size 2 = 16");
}

TEST(ConfigErrors, MissingFileIsAConfigError) {
  try {
    parse_config_file("/nonexistent/zerotrain.json");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/zerotrain.json: cannot open config file");
  }
}

}  // namespace
}  // namespace zt
