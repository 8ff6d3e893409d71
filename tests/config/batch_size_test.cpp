// DeepSpeed's batch derivation, case by case.
#include "tests/config/config_test_util.h"

namespace zt {
namespace {

Config batch(int64_t train, int64_t micro, int64_t gas) {
  Config cfg;
  cfg.train_batch_size = train;
  cfg.train_micro_batch_size_per_gpu = micro;
  cfg.gradient_accumulation_steps = gas;
  return cfg;
}

void expect_batch(const BatchConfig& b, int64_t train, int64_t micro, int64_t gas) {
  EXPECT_EQ(b.train_batch_size, train);
  EXPECT_EQ(b.micro_batch_per_gpu, micro);
  EXPECT_EQ(b.gradient_accumulation_steps, gas);
}

std::string batch_error(const Config& cfg, int world_size) {
  try {
    resolve_batch(cfg, world_size);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST(ResolveBatch, AllThreeAgree) { expect_batch(resolve_batch(batch(16, 4, 2), 2), 16, 4, 2); }

TEST(ResolveBatch, DerivesGradientAccumulation) { expect_batch(resolve_batch(batch(32, 4, 0), 2), 32, 4, 4); }

TEST(ResolveBatch, DerivesMicroBatch) { expect_batch(resolve_batch(batch(32, 0, 2), 4), 32, 4, 2); }

TEST(ResolveBatch, DerivesTrainBatch) { expect_batch(resolve_batch(batch(0, 3, 5), 2), 30, 3, 5); }

TEST(ResolveBatch, TrainOnlyMeansOneAccumulationStep) { expect_batch(resolve_batch(batch(8, 0, 0), 4), 8, 2, 1); }

TEST(ResolveBatch, MicroOnly) { expect_batch(resolve_batch(batch(0, 6, 0), 3), 18, 6, 1); }

TEST(ResolveBatch, DisagreementShowsTheArithmetic) {
  EXPECT_EQ(batch_error(batch(32, 4, 2), 2),
            "batch sizes disagree: train_batch_size 32 != train_micro_batch_size_per_gpu 4 * "
            "gradient_accumulation_steps 2 * world_size 2 = 16");
}

TEST(ResolveBatch, IndivisibleDerivationIsADisagreement) {
  EXPECT_EQ(batch_error(batch(30, 4, 0), 2),
            "batch sizes disagree: train_batch_size 30 != train_micro_batch_size_per_gpu 4 * "
            "gradient_accumulation_steps 3 * world_size 2 = 24 (gradient_accumulation_steps derived as 30 / 4 / 2)");
  EXPECT_EQ(batch_error(batch(3, 0, 0), 4),
            "batch sizes disagree: train_batch_size 3 != train_micro_batch_size_per_gpu 0 * "
            "gradient_accumulation_steps 1 * world_size 4 = 0 (gradient_accumulation_steps defaults to 1, "
            "train_micro_batch_size_per_gpu derived as 3 / 4)");
}

TEST(ResolveBatch, NeedsTrainOrMicro) {
  EXPECT_EQ(batch_error(batch(0, 0, 4), 2),
            "train_batch_size: either train_batch_size or train_micro_batch_size_per_gpu must be given");
  EXPECT_EQ(batch_error(batch(8, 0, 0), 0), "world_size must be >= 1, got 0");
}

}  // namespace
}  // namespace zt
