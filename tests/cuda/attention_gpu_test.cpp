// GPU attention (reference and flash) against kernels/cpu/attention, forward and backward, over several key tiles
// of the flash kernel (T > 64) and both supported head dims. The argument checks run without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "engine/base/error.h"
#include "gpu_test_util.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"

namespace {

using namespace zt::cuda::test;

template <typename T_>
class AttentionGpu : public ::testing::Test {};
TYPED_TEST_SUITE(AttentionGpu, StorageTypes, StorageTypeNames);

struct Shape {
  int B, T, C, NH;
};
// head dim 64 (GPT-2) over three flash tiles, and head dim 32.
const Shape kShapes[] = {{2, 150, 128, 2}, {1, 70, 96, 3}};

// The lower triangle (t2 <= t) of every [T,T] block: what the kernels define.
std::vector<float> lower_triangles(const std::vector<float>& att, const Shape& s) {
  std::vector<float> r;
  for (size_t bh = 0; bh < (size_t)s.B * s.NH; bh++)
    for (int t = 0; t < s.T; t++)
      for (int t2 = 0; t2 <= t; t2++) r.push_back(att[(bh * s.T + t) * s.T + t2]);
  return r;
}

template <typename S>
void check_attention(const Shape& s) {
  SCOPED_TRACE("B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C) +
               " NH=" + std::to_string(s.NH));
  const size_t nqkv = (size_t)s.B * s.T * 3 * s.C, nout = (size_t)s.B * s.T * s.C;
  const size_t natt = (size_t)s.B * s.NH * s.T * s.T;
  const auto qkv = round_to<S>(random_floats(nqkv, 20));
  const auto dout = round_to<S>(random_floats(nout, 21));
  std::vector<float> out(nout), att(natt), dqkv(nqkv);
  zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.C, s.NH);
  zt::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), s.B, s.T, s.C, s.NH);

  DeviceArray<S> d_qkv(qkv), d_dout(dout), d_out(nout);
  DeviceArray<S> d_dqkv(random_floats(nqkv, 22));  // garbage: the backward overwrites
  DeviceArray<float> d_att(natt), d_lse((size_t)s.B * s.NH * s.T);
  DeviceArray<float> d_scratch(zt::cuda::attention_backward_scratch_floats(s.B, s.T, s.NH, true));

  zt::cuda::attention_forward(d_out.get(), d_att.get(), d_qkv.get(), s.B, s.T, s.C, s.NH);
  expect_close("attention_forward out", out, d_out.download(), tolerance<S>());
  expect_close("attention_forward att", lower_triangles(att, s), lower_triangles(d_att.download(), s), 1e-5);
  zt::cuda::attention_backward(d_dqkv.get(), d_scratch.get(), d_dout.get(), d_qkv.get(), d_att.get(), s.B, s.T, s.C,
                               s.NH);
  expect_close("attention_backward dqkv", dqkv, d_dqkv.download(), tolerance<S>());

  d_out.upload(std::vector<float>(nout, 0.0f));
  d_dqkv.upload(random_floats(nqkv, 23));
  zt::cuda::attention_forward_flash(d_out.get(), d_lse.get(), d_qkv.get(), s.B, s.T, s.C, s.NH);
  expect_close("flash forward out", out, d_out.download(), tolerance<S>());
  zt::cuda::attention_backward_flash(d_dqkv.get(), d_scratch.get(), d_dout.get(), d_qkv.get(), d_lse.get(), s.B,
                                     s.T, s.C, s.NH);
  expect_close("flash backward dqkv", dqkv, d_dqkv.download(), tolerance<S>());
}

TYPED_TEST(AttentionGpu, MatchesCpu) {
  ZT_REQUIRE_GPU();
  for (const Shape& s : kShapes) check_attention<TypeParam>(s);
}

TEST(AttentionGpu, BadLaunchIsReportedWithTheKernelName) {
  ZT_REQUIRE_GPU();
  // 70000 heads exceed the grid's y limit (65535): the launch itself fails, before any memory is touched.
  try {
    zt::cuda::attention_forward<float>(nullptr, nullptr, nullptr, 1, 1, 70000, 70000);
    FAIL() << "an invalid launch went unreported";
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("attention_forward_kernel"), std::string::npos) << e.what();
  }
}

// Argument checks happen on the host before anything reaches the device, so these run without a GPU.
TEST(AttentionArgs, FlashRejectsUnsupportedHeadDims) {
  EXPECT_TRUE(zt::cuda::flash_attention_supports(64));
  EXPECT_TRUE(zt::cuda::flash_attention_supports(32));
  EXPECT_FALSE(zt::cuda::flash_attention_supports(128));
  try {
    zt::cuda::attention_forward_flash<float>(nullptr, nullptr, nullptr, 1, 4, 96, 2);
    FAIL() << "head dim 48 accepted";
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos) << e.what();
  }
}

TEST(AttentionArgs, RejectsChannelsNotDivisibleByHeads) {
  EXPECT_THROW(zt::cuda::attention_forward<float>(nullptr, nullptr, nullptr, 1, 4, 100, 3), zt::RuntimeError);
  EXPECT_THROW(zt::cuda::attention_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 100, 3),
               zt::RuntimeError);
}

TEST(AttentionArgs, ScratchSizes) {
  EXPECT_EQ(zt::cuda::attention_backward_scratch_floats(2, 10, 3, false), 600u);
  EXPECT_EQ(zt::cuda::attention_backward_scratch_floats(2, 10, 3, true), 1200u);
}

}  // namespace
