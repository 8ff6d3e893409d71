// The initial weights the GPU path streams to the device (engine/model/initial_weights.h): a layout-only GPT2
// allocates no parameters or gradients, and every range read from the seed, a model or a safetensors file (F32 and
// BF16) equals the full CPU model's init bit for bit, pairs of the Box-Muller stream split at odd offsets included.
#include "engine/model/initial_weights.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/model/gpt2.h"
#include "engine/runtime/model_io.h"

namespace {

// Odd sizes everywhere: tensors of odd element counts (vocab 97, C 24), so that pairs straddle tensor ends.
const zt::ModelDims kDims{3, 2, 24, 97, 33};

bool bitwise_equal(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Whole, tensor by tensor (each parameter alone), and random ranges of 1 to a few hundred elements anywhere.
void expect_reads_equal(const zt::InitialWeights& init, const zt::GPT2& layout, const float* want) {
  const size_t n = layout.num_params();
  std::vector<float> got(n);
  init.read(0, n, got.data());
  EXPECT_TRUE(bitwise_equal(got.data(), want, n));
  for (const zt::ParamInfo& p : layout.params()) {
    std::vector<float> one(p.numel);
    init.read(p.offset, p.numel, one.data());
    EXPECT_TRUE(bitwise_equal(one.data(), want + p.offset, p.numel)) << p.name;
  }
  std::mt19937 rng(3);
  for (int k = 0; k < 500; ++k) {
    const size_t len = 1 + rng() % 300, at = rng() % (n - len + 1);
    std::vector<float> part(len);
    init.read(at, len, part.data());
    ASSERT_TRUE(bitwise_equal(part.data(), want + at, len)) << "[" << at << ", " << at + len << ")";
  }
  float x = 0;
  EXPECT_THROW(init.read(n, 1, &x), zt::RuntimeError);
  EXPECT_NO_THROW(init.read(n, 0, &x));
}

TEST(InitialWeights, ALayoutAllocatesNoParametersOrGradients) {
  zt::GPT2 full(kDims, false);
  zt::GPT2 layout(kDims, false, zt::GPT2Buffers::None);
  EXPECT_EQ(full.buffer_bytes(), 8 * full.num_params());  // fp32 parameters + gradients
  EXPECT_EQ(layout.buffer_bytes(), 0u);
  EXPECT_EQ(layout.param_data(), nullptr);
  EXPECT_EQ(layout.grad_data(), nullptr);
  EXPECT_EQ(layout.num_params(), full.num_params());
  ASSERT_EQ(layout.params().size(), full.params().size());
  for (size_t i = 0; i < full.params().size(); ++i) {
    EXPECT_EQ(layout.params()[i].name, full.params()[i].name);
    EXPECT_EQ(layout.params()[i].offset, full.params()[i].offset);
    EXPECT_EQ(layout.params()[i].unit, full.params()[i].unit);
  }
  full.release_own_buffers();
  EXPECT_EQ(full.buffer_bytes(), 0u);
  // Nothing to compute on: a forward without buffers or hooks is an error, not a crash.
  std::vector<int32_t> tokens(9, 1);
  EXPECT_THROW(layout.forward(tokens.data(), tokens.data() + 1, 1, 8), zt::RuntimeError);
}

TEST(InitialWeights, FromTheSeedEqualTheCpuModelsInitBitForBit) {
  zt::GPT2 full(kDims, false);
  full.init_weights(1337);
  zt::GPT2 layout(kDims, false, zt::GPT2Buffers::None);
  auto init = zt::seeded_initial_weights(layout, 1337);
  EXPECT_EQ(init->num_params(), full.num_params());
  expect_reads_equal(*init, layout, full.param_data());
  // Another seed gives other values (the seed is used).
  std::vector<float> other(full.num_params());
  zt::seeded_initial_weights(layout, 1338)->read(0, other.size(), other.data());
  EXPECT_FALSE(bitwise_equal(other.data(), full.param_data(), other.size()));
}

TEST(InitialWeights, FromAModelReadItsBuffers) {
  zt::GPT2 full(kDims, false);
  full.init_weights(5);
  expect_reads_equal(*zt::model_initial_weights(full), full, full.param_data());
  zt::GPT2 layout(kDims, false, zt::GPT2Buffers::None);
  std::vector<float> x(4);
  EXPECT_THROW(zt::model_initial_weights(layout)->read(0, 4, x.data()), zt::RuntimeError);
}

TEST(InitialWeights, FromAFileEqualLoadModelWeightsInF32AndBf16) {
  zt::GPT2 src(kDims, false);
  src.init_weights(21);
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "zt_initial_weights_test";
  std::filesystem::create_directories(dir);
  for (zt::StDtype dt : {zt::StDtype::F32, zt::StDtype::BF16}) {
    SCOPED_TRACE(zt::st_dtype_name(dt));
    std::vector<zt::StTensorRef> refs;
    for (const zt::ParamInfo& p : src.params()) refs.push_back({p.name, dt, p.shape, src.param_data() + p.offset});
    const std::string path = (dir / (std::string("w_") + zt::st_dtype_name(dt) + ".safetensors")).string();
    zt::write_safetensors(path, refs);
    zt::GPT2 loaded(kDims, false);
    zt::load_model_weights(loaded, path);
    zt::GPT2 layout(kDims, false, zt::GPT2Buffers::None);
    expect_reads_equal(*zt::file_initial_weights(layout, path), layout, loaded.param_data());
  }
  // A missing tensor is named when the source is made, not at the first read.
  std::vector<zt::StTensorRef> refs;
  for (const zt::ParamInfo& p : src.params())
    if (p.name != "transformer.h.1.mlp.c_fc.bias") refs.push_back({p.name, zt::StDtype::F32, p.shape,
                                                                    src.param_data() + p.offset});
  const std::string partial = (dir / "partial.safetensors").string();
  zt::write_safetensors(partial, refs);
  zt::GPT2 layout(kDims, false, zt::GPT2Buffers::None);
  try {
    zt::file_initial_weights(layout, partial);
    FAIL() << "a file without transformer.h.1.mlp.c_fc.bias was accepted";
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.h.1.mlp.c_fc.bias"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
