// GPT-2 model: parameter naming/layout, init, activation checkpointing, unit buffers and hooks, and a whole-model
// finite-difference check of backward.
#include "engine/model/gpt2.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/base/error.h"

namespace {

zt::ModelDims tiny_dims() {
  zt::ModelDims d;
  d.n_layer = 2;
  d.n_head = 3;
  d.n_embd = 12;
  d.vocab_size = 97;
  d.block_size = 9;
  return d;
}

std::vector<int32_t> tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(rng() % (uint32_t)vocab);
  return t;
}

const zt::ParamInfo& find(const zt::GPT2& m, const std::string& name) {
  for (const auto& p : m.params())
    if (p.name == name) return p;
  throw std::runtime_error("no parameter " + name);
}

TEST(GPT2Params, Gpt2_124MCountNamesShapesUnits) {
  zt::ModelDims d;
  d.n_layer = 12;
  d.n_head = 12;
  d.n_embd = 768;
  d.vocab_size = 50257;
  d.block_size = 1024;
  zt::GPT2 m(d, false);
  EXPECT_EQ(m.num_params(), 124439808u);
  EXPECT_EQ(m.params().size(), 2u + 12u * 12u + 2u);
  EXPECT_EQ(m.num_units(), 14);
  EXPECT_EQ(find(m, "transformer.wte.weight").shape, (std::vector<int64_t>{50257, 768}));
  EXPECT_EQ(find(m, "transformer.wpe.weight").shape, (std::vector<int64_t>{1024, 768}));
  EXPECT_EQ(find(m, "transformer.h.3.ln_1.weight").shape, (std::vector<int64_t>{768}));
  EXPECT_EQ(find(m, "transformer.h.3.attn.c_attn.weight").shape, (std::vector<int64_t>{768, 2304}));
  EXPECT_EQ(find(m, "transformer.h.3.attn.c_attn.bias").shape, (std::vector<int64_t>{2304}));
  EXPECT_EQ(find(m, "transformer.h.3.attn.c_proj.weight").shape, (std::vector<int64_t>{768, 768}));
  EXPECT_EQ(find(m, "transformer.h.3.mlp.c_fc.weight").shape, (std::vector<int64_t>{768, 3072}));
  EXPECT_EQ(find(m, "transformer.h.3.mlp.c_proj.weight").shape, (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(find(m, "transformer.h.11.mlp.c_proj.bias").shape, (std::vector<int64_t>{768}));
  EXPECT_EQ(find(m, "transformer.ln_f.bias").shape, (std::vector<int64_t>{768}));
  EXPECT_EQ(find(m, "transformer.h.3.ln_2.weight").unit, 4);
  EXPECT_EQ(find(m, "transformer.ln_f.weight").unit, 13);

  // Params tile the flat buffer in order; units are contiguous, in unit order, and cover it.
  size_t off = 0;
  int unit = 0;
  for (const auto& p : m.params()) {
    EXPECT_EQ(p.offset, off) << p.name;
    size_t numel = 1;
    for (auto s : p.shape) numel *= (size_t)s;
    EXPECT_EQ(p.numel, numel) << p.name;
    EXPECT_GE(p.unit, unit) << p.name;
    unit = p.unit;
    const zt::UnitRange r = m.unit_range(p.unit);
    EXPECT_GE(p.offset, r.offset) << p.name;
    EXPECT_LE(p.offset + p.numel, r.offset + r.numel) << p.name;
    EXPECT_EQ(p.weight_decay, p.shape.size() == 2) << p.name;
    off += p.numel;
  }
  EXPECT_EQ(off, m.num_params());
  size_t unit_off = 0;
  for (int u = 0; u < m.num_units(); u++) {
    EXPECT_EQ(m.unit_range(u).offset, unit_off);
    unit_off += m.unit_range(u).numel;
  }
  EXPECT_EQ(unit_off, m.num_params());
  EXPECT_THROW(m.unit_range(14), zt::RuntimeError);
}

TEST(GPT2Params, ResolveDimsValidates) {
  zt::ModelConfig c;
  c.n_layer = 3;
  c.n_head = 4;
  c.n_embd = 64;
  c.vocab_size = 97;
  c.block_size = 32;
  const zt::ModelDims d = zt::resolve_model_dims(c);
  EXPECT_EQ(d.n_layer, 3);
  EXPECT_EQ(d.n_head, 4);
  EXPECT_EQ(d.n_embd, 64);
  EXPECT_EQ(d.vocab_size, 97);
  EXPECT_EQ(d.block_size, 32);
  c.n_head = 5;
  try {
    zt::resolve_model_dims(c);
    FAIL() << "expected ConfigError";
  } catch (const zt::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_embd"), std::string::npos) << e.what();
  }
  c.n_head = 4;
  c.vocab_size = 0;
  try {
    zt::resolve_model_dims(c);
    FAIL() << "expected ConfigError";
  } catch (const zt::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.vocab_size"), std::string::npos) << e.what();
  }
}

TEST(GPT2Init, StatisticsAndDeterminism) {
  zt::ModelDims d;
  d.n_layer = 4;
  d.n_head = 4;
  d.n_embd = 128;
  d.vocab_size = 1001;
  d.block_size = 64;
  zt::GPT2 m(d, false);
  m.init_weights(42);
  const float* w = m.param_data();
  for (const auto& p : m.params()) {
    double sum = 0, sq = 0;
    for (size_t i = 0; i < p.numel; i++) {
      sum += w[p.offset + i];
      sq += (double)w[p.offset + i] * w[p.offset + i];
    }
    const double mean = sum / p.numel, sd = std::sqrt(sq / p.numel - mean * mean);
    const bool is_bias = p.name.ends_with(".bias");
    const bool is_ln = p.name.find(".ln_") != std::string::npos;
    if (is_bias) {
      EXPECT_EQ(sq, 0.0) << p.name;
    } else if (is_ln) {
      EXPECT_EQ(sum, (double)p.numel) << p.name;
      EXPECT_NEAR(sd, 0.0, 1e-12) << p.name;
    } else {
      const double want = p.name.find("c_proj.weight") != std::string::npos ? 0.02 / std::sqrt(2.0 * d.n_layer) : 0.02;
      EXPECT_NEAR(sd, want, want * 0.03) << p.name;  // >= 16k samples: sd of the sd estimate is < 0.6%
      EXPECT_NEAR(mean, 0.0, want * 0.03) << p.name;
    }
  }
  // Same seed: same weights; another seed: different.
  zt::GPT2 m2(d, false), m3(d, false);
  m2.init_weights(42);
  m3.init_weights(43);
  EXPECT_EQ(std::memcmp(m.param_data(), m2.param_data(), m.num_params() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(m.param_data(), m3.param_data(), m.num_params() * sizeof(float)), 0);
  // Independent of the thread count.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  zt::GPT2 m4(d, false);
  m4.init_weights(42);
  omp_set_num_threads(threads);
  EXPECT_EQ(std::memcmp(m.param_data(), m4.param_data(), m.num_params() * sizeof(float)), 0);
  // Distinct tensors get distinct streams (wte and wpe start differently).
  EXPECT_NE(w[find(m, "transformer.wte.weight").offset], w[find(m, "transformer.wpe.weight").offset]);
}

TEST(GPT2Checkpointing, BitIdenticalLossAndGradsLessMemory) {
  const zt::ModelDims d = tiny_dims();
  const int B = 3, T = 9;
  const auto in = tokens(B * T, d.vocab_size, 1), tg = tokens(B * T, d.vocab_size, 2);
  zt::GPT2 plain(d, false), ckpt(d, true);
  plain.init_weights(7);
  ckpt.init_weights(7);
  for (int step = 0; step < 2; step++) {  // twice: the second backward accumulates onto the first
    const float l1 = plain.forward(in.data(), tg.data(), B, T);
    const float l2 = ckpt.forward(in.data(), tg.data(), B, T);
    EXPECT_EQ(std::memcmp(&l1, &l2, sizeof(float)), 0) << l1 << " vs " << l2;
    plain.backward(0.5f);
    ckpt.backward(0.5f);
    EXPECT_EQ(std::memcmp(plain.grad_data(), ckpt.grad_data(), plain.num_params() * sizeof(float)), 0);
  }
  EXPECT_LT(ckpt.activation_bytes(), plain.activation_bytes());
  EXPECT_GT(ckpt.activation_bytes(), 0u);
  // The grads are not trivially zero (the comparison above would then be vacuous).
  double sq = 0;
  for (size_t i = 0; i < plain.num_params(); i++) sq += (double)plain.grad_data()[i] * plain.grad_data()[i];
  EXPECT_GT(sq, 0.0);
}

TEST(GPT2Checkpointing, SavesMemoryOnDeeperModel) {
  zt::ModelDims d = tiny_dims();
  d.n_layer = 8;
  zt::GPT2 plain(d, false), ckpt(d, true);
  const auto in = tokens(2 * 8, d.vocab_size, 3);
  plain.forward(in.data(), in.data(), 2, 8);
  ckpt.forward(in.data(), in.data(), 2, 8);
  EXPECT_LT(ckpt.activation_bytes() * 2, plain.activation_bytes());
}

class RecordingHooks : public zt::UnitHooks {
 public:
  std::vector<std::string> calls;
  void before_forward(int u) override { calls.push_back("bf" + std::to_string(u)); }
  void after_forward(int u) override { calls.push_back("af" + std::to_string(u)); }
  void before_backward(int u) override { calls.push_back("bb" + std::to_string(u)); }
  void after_backward(int u) override { calls.push_back("ab" + std::to_string(u)); }
};

TEST(GPT2Units, HooksInDocumentedOrder) {
  for (bool ck : {false, true}) {
    const zt::ModelDims d = tiny_dims();  // L = 2: units 0, 1, 2, 3
    zt::GPT2 m(d, ck);
    m.init_weights(1);
    RecordingHooks hooks;
    m.set_hooks(&hooks);
    const auto in = tokens(2 * 4, d.vocab_size, 5);
    m.forward(in.data(), in.data(), 2, 4);
    m.backward();
    const std::vector<std::string> want = {"bf0", "af0", "bf1", "af1", "bf2", "af2", "bf3", "af3", "bf0", "af0",
                                           "bb0", "bb3", "ab3", "bb2", "ab2", "bb1", "ab1", "bb0", "ab0"};
    EXPECT_EQ(hooks.calls, want) << "checkpointing " << ck;
    m.set_hooks(nullptr);
    hooks.calls.clear();
    m.forward(in.data(), in.data(), 2, 4);
    EXPECT_TRUE(hooks.calls.empty());
  }
}

// A model whose units all point at external buffers computes what the default one does, and never touches its own.
TEST(GPT2Units, ExternalBuffersGiveSameLossAndGrads) {
  const zt::ModelDims d = tiny_dims();
  const int B = 2, T = 7;
  const auto in = tokens(B * T, d.vocab_size, 11), tg = tokens(B * T, d.vocab_size, 12);
  zt::GPT2 ref(d, false), ext(d, false);
  ref.init_weights(3);
  const float ref_loss = ref.forward(in.data(), tg.data(), B, T);
  ref.backward();

  // ext's own buffers stay zero; every unit points at separate external storage holding ref's weights.
  std::vector<std::vector<float>> params(ext.num_units()), grads(ext.num_units());
  for (int u = 0; u < ext.num_units(); u++) {
    const zt::UnitRange r = ext.unit_range(u);
    params[u].assign(ref.param_data() + r.offset, ref.param_data() + r.offset + r.numel);
    grads[u].assign(r.numel, 0.0f);
    ext.set_unit_buffers(u, params[u].data(), grads[u].data());
  }
  const float ext_loss = ext.forward(in.data(), tg.data(), B, T);
  ext.backward();
  EXPECT_EQ(ext_loss, ref_loss);
  for (int u = 0; u < ext.num_units(); u++) {
    const zt::UnitRange r = ext.unit_range(u);
    EXPECT_EQ(std::memcmp(grads[u].data(), ref.grad_data() + r.offset, r.numel * sizeof(float)), 0) << "unit " << u;
  }
  for (size_t i = 0; i < ext.num_params(); i++) {
    ASSERT_EQ(ext.grad_data()[i], 0.0f) << "own grad buffer written at " << i;
    ASSERT_EQ(ext.param_data()[i], 0.0f) << "own param buffer written at " << i;
  }
  // zero_grad clears the external grads.
  ext.zero_grad();
  for (const auto& g : grads)
    for (float x : g) ASSERT_EQ(x, 0.0f);
  // nullptr restores the own slices.
  for (int u = 0; u < ext.num_units(); u++) ext.set_unit_buffers(u, nullptr, nullptr);
  // (its own params are all zero, so every logit is 0 and the loss is log(V))
  EXPECT_NEAR(ext.forward(in.data(), tg.data(), B, T), std::log((float)d.vocab_size), 1e-5);
}

TEST(GPT2Model, LogitsOnlyAndBadInputs) {
  const zt::ModelDims d = tiny_dims();
  zt::GPT2 m(d, false);
  m.init_weights(1);
  const auto in = tokens(2 * 3, d.vocab_size, 1);
  EXPECT_EQ(m.forward(in.data(), nullptr, 2, 3), 0.0f);
  EXPECT_THROW(m.backward(), zt::RuntimeError);
  // With all-zero weights (LN weight 1) logits are 0: loss = log(V).
  zt::GPT2 z(d, false);
  z.init_weights(1);
  for (const auto& p : z.params())
    if (p.name.find(".ln_") == std::string::npos) std::memset(z.param_data() + p.offset, 0, p.numel * sizeof(float));
  EXPECT_NEAR(z.forward(in.data(), in.data(), 2, 3), std::log((float)d.vocab_size), 1e-5);
  for (int i = 0; i < 6 * d.vocab_size; i++) ASSERT_EQ(z.logits()[i], 0.0f);
  auto bad = in;
  bad[4] = d.vocab_size;
  EXPECT_THROW(m.forward(bad.data(), in.data(), 2, 3), zt::RuntimeError);
  EXPECT_THROW(m.forward(in.data(), in.data(), 1, d.block_size + 1), zt::RuntimeError);
}

TEST(GPT2Model, ShapeChangesGradScaleAndAccumulation) {
  const zt::ModelDims d = tiny_dims();
  const auto small = tokens(2 * 4 + 1, d.vocab_size, 31), big = tokens(3 * 9 + 1, d.vocab_size, 32);
  zt::GPT2 a(d, false), fresh(d, false);
  a.init_weights(2);
  fresh.init_weights(2);
  const float l_small = a.forward(small.data(), small.data() + 1, 2, 4);
  const float l_big = a.forward(big.data(), big.data() + 1, 3, 9);
  EXPECT_EQ(a.forward(small.data(), small.data() + 1, 2, 4), l_small);  // buffers re-sized back and forth
  EXPECT_EQ(fresh.forward(big.data(), big.data() + 1, 3, 9), l_big);
  // backward(s) adds s * grad; two calls accumulate.
  fresh.backward(1.0f);
  std::vector<float> g1(fresh.grad_data(), fresh.grad_data() + fresh.num_params());
  fresh.zero_grad();
  fresh.backward(0.25f);
  fresh.backward(0.5f);
  double max_err = 0, max_g = 0;
  for (size_t i = 0; i < g1.size(); i++) {
    max_err = std::max(max_err, (double)std::fabs(fresh.grad_data()[i] - 0.75f * g1[i]));
    max_g = std::max(max_g, (double)std::fabs(g1[i]));
  }
  EXPECT_GT(max_g, 0.0);
  EXPECT_LT(max_err, 1e-6 * max_g);
}

// Whole model against central differences of its own (float) loss, for a few random elements of every tensor.
TEST(GPT2Model, FiniteDifferenceGradients) {
  zt::ModelDims d;
  d.n_layer = 2;
  d.n_head = 2;
  d.n_embd = 8;
  d.vocab_size = 11;
  d.block_size = 6;
  const int B = 2, T = 5;
  zt::GPT2 m(d, false);
  m.init_weights(5);
  // Make every parameter matter at a scale where float FD is accurate: larger weights, non-trivial LN and biases.
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  float* w = m.param_data();
  for (size_t i = 0; i < m.num_params(); i++) w[i] += nd(rng);
  // Observed float FD error here is ~1.5e-5 absolute; the tolerance below is ~7x that.
  const auto in = tokens(B * T, d.vocab_size, 21), tg = tokens(B * T, d.vocab_size, 22);
  m.zero_grad();
  m.forward(in.data(), tg.data(), B, T);
  m.backward();
  std::vector<float> grad(m.grad_data(), m.grad_data() + m.num_params());
  const float eps = 1e-2f;
  int checked = 0;
  for (const auto& p : m.params()) {
    for (int k = 0; k < 4; k++) {
      size_t i = p.offset + rng() % p.numel;
      if (p.name == "transformer.wpe.weight") i = p.offset + rng() % ((size_t)T * d.n_embd);  // rows t < T only
      const float saved = w[i];
      w[i] = saved + eps;
      const double up = m.forward(in.data(), tg.data(), B, T);
      w[i] = saved - eps;
      const double down = m.forward(in.data(), tg.data(), B, T);
      w[i] = saved;
      const double numeric = (up - down) / (2.0 * eps);
      EXPECT_NEAR(grad[i], numeric, 1e-4 + 1e-3 * std::fabs(numeric)) << p.name << " element " << i - p.offset;
      checked++;
    }
  }
  EXPECT_EQ(checked, (int)m.params().size() * 4);
}

}  // namespace
