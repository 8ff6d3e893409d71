// The GPU GPT-2 against the CPU model: same weights, same tokens; loss and every gradient, with the reference and
// the flash attention. Skips with "no GPU" without a device.
#include <gtest/gtest.h>

#include <vector>

#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/model/gpt2.h"
#include "gpu_test_util.h"

namespace {

using namespace zt::cuda::test;

void check_parity(bool flash) {
  SCOPED_TRACE(flash ? "flash attention" : "reference attention");
  // head dim 32 (flash supports it), T over one flash tile, a vocab that is not a multiple of anything.
  const zt::ModelDims d{2, 2, 64, 97, 96};
  const int B = 2, T = 80;
  zt::GPT2 cpu(d, false);
  cpu.init_weights(7);
  std::vector<int32_t> tokens((size_t)B * T + 1);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)((i * 31 + 5) % d.vocab_size);
  const float cpu_loss = cpu.forward(tokens.data(), tokens.data() + 1, B, T);
  cpu.zero_grad();
  cpu.backward(0.5f);

  zt::cuda::GPT2Cuda gpu(d, cpu.params(), flash);
  gpu.upload_params(cpu.param_data());
  const float gpu_loss = gpu.forward(tokens.data(), tokens.data() + 1, B, T);
  gpu.backward(0.5f);
  std::vector<float> grads(gpu.num_params());
  gpu.download_grads(grads.data());

  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-5 * cpu_loss);
  // Whole-model gradients go through many summations in a different order than on the CPU; compared tensor by
  // tensor against each tensor's largest gradient.
  const float* ref = cpu.grad_data();
  for (const auto& pi : cpu.params()) {
    expect_close(pi.name, std::vector<float>(ref + pi.offset, ref + pi.offset + pi.numel),
                 std::vector<float>(grads.begin() + pi.offset, grads.begin() + pi.offset + pi.numel), 1e-4);
  }
}

TEST(Gpt2Cuda, MatchesCpuModelReferenceAttention) {
  ZT_REQUIRE_GPU();
  check_parity(false);
}

TEST(Gpt2Cuda, MatchesCpuModelFlashAttention) {
  ZT_REQUIRE_GPU();
  check_parity(true);
}

}  // namespace

namespace {

// The layout is checked before any device resource is taken: these run without a GPU.
TEST(Gpt2CudaArgs, RejectsALayoutThatIsNotTheModels) {
  const zt::ModelDims d{2, 2, 64, 97, 96};
  zt::GPT2 cpu(d, false);
  auto layout = cpu.params();
  layout[2 + 12 + 4].name = "transformer.h.1.attn.c_attn.weight";  // where block 1's attn.c_proj.weight belongs
  try {
    zt::cuda::GPT2Cuda gpu(d, layout, false);
    FAIL() << "a shuffled layout was accepted";
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("attn.c_proj.weight"), std::string::npos) << e.what();
  }
  const zt::ModelDims three_layers{3, 2, 64, 97, 96};
  EXPECT_THROW(zt::cuda::GPT2Cuda(three_layers, cpu.params(), false), zt::RuntimeError);
}

TEST(Gpt2CudaArgs, RejectsFlashForAnUnsupportedHeadDim) {
  const zt::ModelDims d{1, 1, 48, 97, 16};  // head dim 48
  zt::GPT2 cpu(d, false);
  try {
    zt::cuda::GPT2Cuda gpu(d, cpu.params(), true);
    FAIL() << "head dim 48 accepted for flash attention";
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos) << e.what();
  }
}

}  // namespace
