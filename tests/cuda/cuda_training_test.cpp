// The GPU training pair's choices that need no device: which attention train.attention selects for a model.
#include "engine/zero/cuda/cuda_training.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/base/error.h"

namespace {

zt::Config with(int n_embd, int n_head, zt::TrainAttention attention) {
  zt::Config cfg;
  cfg.model.n_embd = n_embd;
  cfg.model.n_head = n_head;
  cfg.train.attention = attention;
  return cfg;
}

TEST(CudaTraining, AttentionAutoTakesFlashWhereItsKernelHasTheHeadDim) {
  EXPECT_TRUE(zt::use_flash_attention(with(768, 12, zt::TrainAttention::Auto)));  // GPT-2 124M: head dim 64
  EXPECT_TRUE(zt::use_flash_attention(with(64, 2, zt::TrainAttention::Auto)));    // head dim 32
  EXPECT_FALSE(zt::use_flash_attention(with(96, 2, zt::TrainAttention::Auto)));   // head dim 48: reference
  EXPECT_FALSE(zt::use_flash_attention(with(768, 12, zt::TrainAttention::Reference)));
  EXPECT_TRUE(zt::use_flash_attention(with(768, 12, zt::TrainAttention::Flash)));
}

TEST(CudaTraining, AttentionFlashForAHeadDimItsKernelLacksNamesTheKey) {
  try {
    zt::use_flash_attention(with(96, 2, zt::TrainAttention::Flash));
    FAIL() << "flash accepted for head dim 48";
  } catch (const zt::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("train.attention"), std::string::npos) << what;
    EXPECT_NE(what.find("48"), std::string::npos) << what;
  }
}

}  // namespace
