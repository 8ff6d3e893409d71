// The GPU GPT-2 against the CPU model: same weights, same tokens; loss and every gradient, with the reference and
// the flash attention, in fp32 and in bf16/fp16 storage. Skips with "no GPU" without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/base/error.h"
#include "engine/model/cuda/gpt2_cuda.h"
#include "engine/model/gpt2.h"
#include "gpu_test_util.h"

namespace {

using namespace zt::cuda::test;

// The GPU model in storage type S against the CPU model in fp32 on the same weights (rounded to S), the loss and
// every gradient. fp32 agrees to 1e-5 (loss) and 1e-4 (gradients: many summations in another order, compared tensor by
// tensor against each tensor's largest gradient). 16-bit storage (parameters, activations, gradients) agrees to
// 2e-2; fp16 runs with a loss-scale-like gradient factor, as training does, so that small gradients stay out of
// fp16's subnormals.
template <typename S>
void check_parity(bool flash, float grad_scale) {
  constexpr bool k16 = !std::is_same_v<S, float>;
  const zt::cuda::Storage storage = !k16                                 ? zt::cuda::Storage::F32
                                    : std::is_same_v<S, __nv_bfloat16> ? zt::cuda::Storage::BF16
                                                                       : zt::cuda::Storage::F16;
  SCOPED_TRACE(std::string(zt::cuda::storage_name(storage)) + (flash ? ", flash attention" : ", reference attention"));
  // head dim 32 (flash supports it), T over one flash tile, a vocab that is not a multiple of anything.
  const zt::ModelDims d{2, 2, 64, 97, 96};
  const int B = 2, T = 80;
  zt::GPT2 cpu(d, false);
  cpu.init_weights(7);
  const std::vector<float> rounded =
      round_to<S>(std::vector<float>(cpu.param_data(), cpu.param_data() + cpu.num_params()));
  std::copy(rounded.begin(), rounded.end(), cpu.param_data());
  std::vector<int32_t> tokens((size_t)B * T + 1);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)((i * 31 + 5) % d.vocab_size);
  const float cpu_loss = cpu.forward(tokens.data(), tokens.data() + 1, B, T);
  cpu.zero_grad();
  cpu.backward(grad_scale);

  zt::cuda::GPT2Cuda gpu(d, cpu.params(), flash, storage);
  EXPECT_EQ(gpu.storage(), storage);
  gpu.upload_params(cpu.param_data());
  std::vector<float> params(gpu.num_params());
  gpu.download_params(params.data());
  EXPECT_EQ(params, rounded);  // already representable: the round trip is exact
  const float gpu_loss = gpu.forward(tokens.data(), tokens.data() + 1, B, T);
  gpu.backward(grad_scale);
  std::vector<float> grads(gpu.num_params());
  gpu.download_grads(grads.data());

  EXPECT_NEAR(gpu_loss, cpu_loss, (k16 ? 2e-2 : 1e-5) * cpu_loss);
  const float* ref = cpu.grad_data();
  for (const auto& pi : cpu.params()) {
    expect_close(pi.name, std::vector<float>(ref + pi.offset, ref + pi.offset + pi.numel),
                 std::vector<float>(grads.begin() + pi.offset, grads.begin() + pi.offset + pi.numel),
                 k16 ? 2e-2 : 1e-4);
  }
}

TEST(Gpt2Cuda, MatchesCpuModelReferenceAttention) {
  ZT_REQUIRE_GPU();
  check_parity<float>(false, 0.5f);
}

TEST(Gpt2Cuda, MatchesCpuModelFlashAttention) {
  ZT_REQUIRE_GPU();
  check_parity<float>(true, 0.5f);
}

TEST(Gpt2Cuda, Bf16MatchesCpuModelInFp32) {
  ZT_REQUIRE_GPU();
  check_parity<__nv_bfloat16>(false, 0.5f);
}

TEST(Gpt2Cuda, Bf16FlashMatchesCpuModelInFp32) {
  ZT_REQUIRE_GPU();
  check_parity<__nv_bfloat16>(true, 0.5f);
}

TEST(Gpt2Cuda, Fp16MatchesCpuModelInFp32) {
  ZT_REQUIRE_GPU();
  check_parity<__half>(false, 1024.0f);
}

}  // namespace

namespace {

// The layout is checked before any device resource is taken: these run without a GPU.
// Records the hook calls as "bf0", "ab3", ...; optionally points each unit at buffers of its own first (the GPU
// model without full-size buffers, as stage 3 runs it).
// poison_after: each after_* points the unit at NaN parameters and a junk gradient buffer, as a stage-3 release
// would free them, so a kernel that reads the unit outside its before/after window spoils the loss or gradients.
class RecordingHooks : public zt::UnitHooks {
 public:
  explicit RecordingHooks(zt::cuda::GPT2Cuda* gpu = nullptr, bool poison_after = false)
      : gpu_(gpu), poison_after_(poison_after) {}
  void add_unit(std::vector<float> params) {
    const size_t n = params.size();
    params_.push_back(std::make_unique<DeviceArray<float>>(params));
    grads_.push_back(std::make_unique<DeviceArray<float>>(std::vector<float>(n, 0.0f)));
    nan_params_.push_back(std::make_unique<DeviceArray<float>>(std::vector<float>(n, std::nanf(""))));
    junk_grads_.push_back(std::make_unique<DeviceArray<float>>(std::vector<float>(n, 0.0f)));
  }
  std::vector<float> grads(int unit) const { return grads_[static_cast<size_t>(unit)]->download(); }
  void before_forward(int u) override { record("bf", u); }
  void after_forward(int u) override { record("af", u); }
  void before_backward(int u) override { record("bb", u); }
  void after_backward(int u) override { record("ab", u); }
  std::vector<std::string> calls;

 private:
  void record(const char* what, int u) {
    std::string call(what);
    call += std::to_string(u);
    calls.push_back(call);
    const size_t i = static_cast<size_t>(u);
    if (gpu_ && what[0] == 'b') gpu_->set_unit_buffers(u, params_[i]->get(), grads_[i]->get());
    if (gpu_ && what[0] == 'a' && poison_after_) {
      gpu_->synchronize();  // the unit's queued kernels ran on the real buffers
      gpu_->set_unit_buffers(u, nan_params_[i]->get(), junk_grads_[i]->get());
    }
  }
  zt::cuda::GPT2Cuda* gpu_;
  bool poison_after_;
  std::vector<std::unique_ptr<DeviceArray<float>>> params_, grads_, nan_params_, junk_grads_;
};

// Stage 3's view of the model: no full-size buffers, every unit reached through the hooks and poisoned outside
// them. The hooks come in the CPU model's order (engine/model/gpt2.h), and the loss and every gradient are the CPU
// model's. With activation checkpointing the recompute of a block happens between its unit's before_backward and
// after_backward (the CPU model's contract), so it reads gathered parameters.
void check_unit_hooks(bool checkpointing) {
  SCOPED_TRACE(checkpointing ? "activation checkpointing" : "all activations kept");
  const zt::ModelDims d{3, 2, 64, 97, 64};
  const int B = 2, T = 48;
  zt::GPT2 cpu(d, checkpointing);
  cpu.init_weights(9);
  std::vector<int32_t> tokens((size_t)B * T + 1);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)((i * 17 + 3) % d.vocab_size);
  RecordingHooks cpu_hooks;
  cpu.set_hooks(&cpu_hooks);
  cpu.zero_grad();
  const float cpu_loss = cpu.forward(tokens.data(), tokens.data() + 1, B, T);
  cpu.backward(1.0f);
  cpu.set_hooks(nullptr);

  zt::cuda::GPT2Cuda gpu(d, cpu.params(), false, zt::cuda::Storage::F32, /*own_buffers=*/false, checkpointing);
  EXPECT_EQ(gpu.device_params(), nullptr);
  std::vector<float> flat(cpu.num_params());
  EXPECT_THROW(gpu.download_params(flat.data()), zt::RuntimeError);
  RecordingHooks gpu_hooks(&gpu, /*poison_after=*/true);
  for (int u = 0; u < cpu.num_units(); ++u) {
    const zt::UnitRange r = cpu.unit_range(u);
    gpu_hooks.add_unit(std::vector<float>(cpu.param_data() + r.offset, cpu.param_data() + r.offset + r.numel));
  }
  gpu.set_hooks(&gpu_hooks);
  const float gpu_loss = gpu.forward(tokens.data(), tokens.data() + 1, B, T);
  gpu.backward(1.0f);
  gpu.synchronize();
  EXPECT_EQ(gpu_hooks.calls, cpu_hooks.calls);
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-5 * cpu_loss);
  for (int u = 0; u < cpu.num_units(); ++u) {
    const zt::UnitRange r = cpu.unit_range(u);
    expect_close("unit " + std::to_string(u),
                 std::vector<float>(cpu.grad_data() + r.offset, cpu.grad_data() + r.offset + r.numel),
                 gpu_hooks.grads(u), 1e-4);
  }
}

TEST(Gpt2Cuda, UnitHooksFollowTheCpuModelAndUnitBuffersCarryEverything) {
  ZT_REQUIRE_GPU();
  check_unit_hooks(false);
}

TEST(Gpt2Cuda, ActivationCheckpointingRecomputesInsideTheUnitsBackwardHooks) {
  ZT_REQUIRE_GPU();
  check_unit_hooks(true);
}

// Activation checkpointing (each block's forward again in its backward) against the model that keeps every block's
// activations: the kernels are deterministic, so the loss and the accumulated gradients of two micro-batches are
// equal bit for bit; the activations shrink by all blocks but one.
template <typename S>
void check_checkpointing(bool flash) {
  const zt::cuda::Storage storage = std::is_same_v<S, float>           ? zt::cuda::Storage::F32
                                    : std::is_same_v<S, __nv_bfloat16> ? zt::cuda::Storage::BF16
                                                                       : zt::cuda::Storage::F16;
  SCOPED_TRACE(std::string(zt::cuda::storage_name(storage)) + (flash ? ", flash attention" : ", reference attention"));
  const zt::ModelDims d{4, 2, 64, 97, 96};
  const int B = 2, T = 80;
  zt::GPT2 cpu(d, false);
  cpu.init_weights(11);
  std::vector<int32_t> tokens((size_t)2 * B * T + 1);
  for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)((i * 29 + 7) % d.vocab_size);
  zt::cuda::GPT2Cuda plain(d, cpu.params(), flash, storage);
  zt::cuda::GPT2Cuda ckpt(d, cpu.params(), flash, storage, /*own_buffers=*/true, /*activation_checkpointing=*/true);
  std::vector<float> losses[2], grads[2];
  zt::cuda::GPT2Cuda* models[2] = {&plain, &ckpt};
  for (int k = 0; k < 2; ++k) {
    models[k]->upload_params(cpu.param_data());
    for (int micro = 0; micro < 2; ++micro) {
      const int32_t* in = tokens.data() + (size_t)micro * B * T;
      losses[k].push_back(models[k]->forward(in, in + 1, B, T));
      models[k]->backward(0.5f);
    }
    grads[k].resize(cpu.num_params());
    models[k]->download_grads(grads[k].data());
  }
  EXPECT_EQ(losses[1], losses[0]);
  for (const auto& pi : cpu.params()) {
    const std::vector<float> want(grads[0].begin() + pi.offset, grads[0].begin() + pi.offset + pi.numel);
    const std::vector<float> got(grads[1].begin() + pi.offset, grads[1].begin() + pi.offset + pi.numel);
    EXPECT_EQ(got, want) << pi.name;
  }
  // What one block keeps beyond its input: ln1, atty, residual2, ln2 [BT,C], qkv [BT,3C], fch, fch_gelu [BT,4C] in
  // S, four LayerNorm statistics [BT] and the attention's probabilities or lse in fp32 (each piece 256-aligned).
  const size_t BT = (size_t)B * T, C = d.n_embd, NH = d.n_head;
  const size_t block_bytes = sizeof(S) * BT * C * (4 + 3 + 8) + sizeof(float) * BT * 4 +
                             sizeof(float) * (flash ? B * NH * T : B * NH * T * T);
  EXPECT_GE(plain.activation_bytes() - ckpt.activation_bytes(), (size_t)(d.n_layer - 1) * block_bytes);
  EXPECT_LE(plain.activation_bytes() - ckpt.activation_bytes(), (size_t)(d.n_layer - 1) * (block_bytes + 12 * 256));
}

TEST(Gpt2Cuda, ActivationCheckpointingIsBitIdenticalWithOneBlockOfActivations) {
  ZT_REQUIRE_GPU();
  check_checkpointing<float>(false);
  check_checkpointing<float>(true);
  check_checkpointing<__nv_bfloat16>(false);
  check_checkpointing<__nv_bfloat16>(true);
  check_checkpointing<__half>(false);
}

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
