#include "engine/model/gpt2.h"

#include <cmath>
#include <cstring>
#include <string>

#include "engine/base/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/encoder.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/residual.h"

namespace zt {

namespace cpu_k = zt::cpu;

ModelDims resolve_model_dims(const ModelConfig& cfg) {
  auto positive = [](int v, const char* field) {
    if (v <= 0) throw ConfigError(std::string("model.") + field + " must be positive, got " + std::to_string(v));
  };
  positive(cfg.n_layer, "n_layer");
  positive(cfg.n_head, "n_head");
  positive(cfg.n_embd, "n_embd");
  positive(cfg.vocab_size, "vocab_size");
  positive(cfg.block_size, "block_size");
  if (cfg.n_embd % cfg.n_head != 0)
    throw ConfigError("model.n_embd (" + std::to_string(cfg.n_embd) + ") must be divisible by model.n_head (" +
                      std::to_string(cfg.n_head) + ")");
  ModelDims d;
  d.n_layer = cfg.n_layer;
  d.n_head = cfg.n_head;
  d.n_embd = cfg.n_embd;
  d.vocab_size = cfg.vocab_size;
  d.block_size = cfg.block_size;
  return d;
}

namespace {

// Parameter order inside a block, as Hugging Face lists them.
enum BlockParam {
  kLn1W,
  kLn1B,
  kAttnW,
  kAttnB,
  kAttnProjW,
  kAttnProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcProjW,
  kFcProjB,
  kNumBlockParams
};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in (0, 1]: 53 random bits, shifted away from 0 so that log() below is finite.
double uniform01(uint64_t& state) { return (double)((splitmix64(state) >> 11) + 1) * (1.0 / 9007199254740992.0); }

// Forward activations of one block that its backward reads.
struct BlockActs {
  float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *residual2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu;
};

}  // namespace

struct GPT2::Impl {
  ModelDims d;
  bool ckpt = false;
  std::vector<ParamInfo> params;
  std::vector<UnitRange> units;
  std::vector<float> own_params, own_grads;
  size_t n_params = 0;
  bool owns_buffers = true;
  std::vector<float*> unit_params, unit_grads;
  UnitHooks* hooks = nullptr;
  int block_first_param = 0;  // index in params of block 0's first parameter

  // Activations, allocated for one (B, T) and reused while it stays the same.
  int B = 0, T = 0;
  std::vector<float> acts_mem;
  std::vector<float*> residual;       // n_layer + 1 residual streams: residual[l] is block l's input
  std::vector<BlockActs> block_acts;  // n_layer sets, or one shared set with checkpointing
  int scratch_layer = -1;             // with checkpointing: which block's activations the shared set holds
  float* tmp_c = nullptr;             // [BT,C] matmul output before its residual add
  float *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr, *lse = nullptr, *losses = nullptr;
  // Backward scratch (shared by all blocks).
  float *dres = nullptr, *dtmp_c = nullptr, *dqkv = nullptr, *dfch = nullptr, *dlogits = nullptr;
  std::vector<int32_t> inputs, targets;
  bool have_targets = false;

  // Parameter i of the current unit buffers.
  float* p(int i) { return unit_params[params[i].unit] + (params[i].offset - units[params[i].unit].offset); }
  float* g(int i) { return unit_grads[params[i].unit] + (params[i].offset - units[params[i].unit].offset); }
  int bp(int layer, BlockParam which) const { return block_first_param + layer * kNumBlockParams + which; }

  void add_param(const std::string& name, std::vector<int64_t> shape, int unit, bool decay) {
    ParamInfo info;
    info.name = name;
    info.shape = std::move(shape);
    info.numel = 1;
    for (int64_t s : info.shape) info.numel *= (size_t)s;
    info.offset = params.empty() ? 0 : params.back().offset + params.back().numel;
    info.unit = unit;
    info.weight_decay = decay;
    params.push_back(std::move(info));
  }

  void before_fwd(int u) {
    if (hooks) hooks->before_forward(u);
  }
  void after_fwd(int u) {
    if (hooks) hooks->after_forward(u);
  }
  void before_bwd(int u) {
    if (hooks) hooks->before_backward(u);
  }
  void after_bwd(int u) {
    if (hooks) hooks->after_backward(u);
  }

  void allocate_activations(int newB, int newT);
  void block_forward(int l);
  void block_backward(int l);
};

void GPT2::Impl::allocate_activations(int newB, int newT) {
  if (newB == B && newT == T) return;
  B = newB;
  T = newT;
  const size_t BT = (size_t)B * T, C = d.n_embd, V = d.vocab_size, NH = d.n_head, L = d.n_layer;
  const size_t block_floats = BT * C /*ln1*/ + 2 * BT + BT * 3 * C /*qkv*/ + BT * C /*atty*/ + B * NH * T * T +
                              BT * C /*residual2*/ + BT * C /*ln2*/ + 2 * BT + 2 * BT * 4 * C /*fch, fch_gelu*/;
  const size_t n_block_sets = ckpt ? 1 : L;
  const size_t total = (L + 1) * BT * C + n_block_sets * block_floats + BT * C /*tmp_c*/ + BT * C + 2 * BT + BT * V +
                       2 * BT /*lnf.., logits, lse, losses*/ + BT * C * 2 + BT * 3 * C + BT * 4 * C +
                       BT * V /*backward scratch*/;
  acts_mem.assign(total, 0.0f);
  float* cur = acts_mem.data();
  auto take = [&](size_t n) {
    float* r = cur;
    cur += n;
    return r;
  };
  residual.assign(L + 1, nullptr);
  for (auto& r : residual) r = take(BT * C);
  block_acts.assign(n_block_sets, BlockActs{});
  for (auto& a : block_acts) {
    a.ln1 = take(BT * C);
    a.ln1_mean = take(BT);
    a.ln1_rstd = take(BT);
    a.qkv = take(BT * 3 * C);
    a.atty = take(BT * C);
    a.att = take(B * NH * T * T);
    a.residual2 = take(BT * C);
    a.ln2 = take(BT * C);
    a.ln2_mean = take(BT);
    a.ln2_rstd = take(BT);
    a.fch = take(BT * 4 * C);
    a.fch_gelu = take(BT * 4 * C);
  }
  tmp_c = take(BT * C);
  lnf = take(BT * C);
  lnf_mean = take(BT);
  lnf_rstd = take(BT);
  logits = take(BT * V);
  lse = take(BT);
  losses = take(BT);
  dres = take(BT * C);
  dtmp_c = take(BT * C);
  dqkv = take(BT * 3 * C);
  dfch = take(BT * 4 * C);
  dlogits = take(BT * V);
  if (cur != acts_mem.data() + total) throw RuntimeError("GPT2: activation layout size mismatch (internal)");
  scratch_layer = -1;
}

void GPT2::Impl::block_forward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  BlockActs& a = block_acts[ckpt ? 0 : l];
  const float* x = residual[l];
  cpu_k::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p(bp(l, kLn1W)), p(bp(l, kLn1B)), BT, C);
  cpu_k::matmul_forward(a.qkv, a.ln1, p(bp(l, kAttnW)), p(bp(l, kAttnB)), BT, C, 3 * C);
  cpu_k::attention_forward(a.atty, a.att, a.qkv, B, T, C, NH);
  cpu_k::matmul_forward(tmp_c, a.atty, p(bp(l, kAttnProjW)), p(bp(l, kAttnProjB)), BT, C, C);
  cpu_k::residual_forward(a.residual2, x, tmp_c, BT * C);
  cpu_k::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, p(bp(l, kLn2W)), p(bp(l, kLn2B)), BT, C);
  cpu_k::matmul_forward(a.fch, a.ln2, p(bp(l, kFcW)), p(bp(l, kFcB)), BT, C, 4 * C);
  cpu_k::gelu_forward(a.fch_gelu, a.fch, BT * 4 * C);
  cpu_k::matmul_forward(tmp_c, a.fch_gelu, p(bp(l, kFcProjW)), p(bp(l, kFcProjB)), BT, 4 * C, C);
  cpu_k::residual_forward(residual[l + 1], a.residual2, tmp_c, BT * C);
  scratch_layer = l;
}

// dres holds d(loss)/d(block output) on entry and d(loss)/d(block input) on exit. Both inputs of a residual add get
// the add's output gradient, so the whole residual stream shares the one buffer and each LayerNorm adds into it.
void GPT2::Impl::block_backward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  if (ckpt && scratch_layer != l) block_forward(l);  // recompute from the kept block input residual[l]
  BlockActs& a = block_acts[ckpt ? 0 : l];
  const float* x = residual[l];
  // MLP branch: residual3 = residual2 + c_proj(gelu(c_fc(ln_2(residual2))))
  cpu_k::matmul_backward(dfch, g(bp(l, kFcProjW)), g(bp(l, kFcProjB)), dres, a.fch_gelu, p(bp(l, kFcProjW)), BT, 4 * C,
                         C);
  cpu_k::gelu_backward(dfch, a.fch, dfch, BT * 4 * C);
  cpu_k::matmul_backward(dtmp_c, g(bp(l, kFcW)), g(bp(l, kFcB)), dfch, a.ln2, p(bp(l, kFcW)), BT, C, 4 * C);
  cpu_k::layernorm_backward(dres, g(bp(l, kLn2W)), g(bp(l, kLn2B)), dtmp_c, a.residual2, p(bp(l, kLn2W)), a.ln2_mean,
                            a.ln2_rstd, BT, C);
  // Attention branch: residual2 = x + c_proj(attn(c_attn(ln_1(x))))
  cpu_k::matmul_backward(dtmp_c, g(bp(l, kAttnProjW)), g(bp(l, kAttnProjB)), dres, a.atty, p(bp(l, kAttnProjW)), BT, C,
                         C);
  cpu_k::attention_backward(dqkv, dtmp_c, a.qkv, a.att, B, T, C, NH);
  cpu_k::matmul_backward(dtmp_c, g(bp(l, kAttnW)), g(bp(l, kAttnB)), dqkv, a.ln1, p(bp(l, kAttnW)), BT, C, 3 * C);
  cpu_k::layernorm_backward(dres, g(bp(l, kLn1W)), g(bp(l, kLn1B)), dtmp_c, x, p(bp(l, kLn1W)), a.ln1_mean, a.ln1_rstd,
                            BT, C);
}

GPT2::GPT2(const ModelDims& dims, bool activation_checkpointing, GPT2Buffers buffers) : impl_(new Impl) {
  Impl& m = *impl_;
  m.d = dims;
  m.ckpt = activation_checkpointing;
  if (dims.n_layer <= 0 || dims.n_head <= 0 || dims.n_embd <= 0 || dims.vocab_size <= 0 || dims.block_size <= 0 ||
      dims.n_embd % dims.n_head != 0) {
    delete impl_;
    throw ConfigError("GPT2: invalid model dims (n_layer " + std::to_string(dims.n_layer) + ", n_head " +
                      std::to_string(dims.n_head) + ", n_embd " + std::to_string(dims.n_embd) + ", vocab_size " +
                      std::to_string(dims.vocab_size) + ", block_size " + std::to_string(dims.block_size) + ")");
  }
  const int64_t C = dims.n_embd;
  m.add_param("transformer.wte.weight", {dims.vocab_size, C}, 0, true);
  m.add_param("transformer.wpe.weight", {dims.block_size, C}, 0, true);
  m.block_first_param = (int)m.params.size();
  for (int l = 0; l < dims.n_layer; l++) {
    const std::string h = "transformer.h." + std::to_string(l) + ".";
    const int u = l + 1;
    m.add_param(h + "ln_1.weight", {C}, u, false);
    m.add_param(h + "ln_1.bias", {C}, u, false);
    m.add_param(h + "attn.c_attn.weight", {C, 3 * C}, u, true);
    m.add_param(h + "attn.c_attn.bias", {3 * C}, u, false);
    m.add_param(h + "attn.c_proj.weight", {C, C}, u, true);
    m.add_param(h + "attn.c_proj.bias", {C}, u, false);
    m.add_param(h + "ln_2.weight", {C}, u, false);
    m.add_param(h + "ln_2.bias", {C}, u, false);
    m.add_param(h + "mlp.c_fc.weight", {C, 4 * C}, u, true);
    m.add_param(h + "mlp.c_fc.bias", {4 * C}, u, false);
    m.add_param(h + "mlp.c_proj.weight", {4 * C, C}, u, true);
    m.add_param(h + "mlp.c_proj.bias", {C}, u, false);
  }
  m.add_param("transformer.ln_f.weight", {C}, dims.n_layer + 1, false);
  m.add_param("transformer.ln_f.bias", {C}, dims.n_layer + 1, false);

  m.units.assign(dims.n_layer + 2, UnitRange{});
  for (auto& u : m.units) u.offset = SIZE_MAX;
  for (const auto& pi : m.params) {
    UnitRange& u = m.units[pi.unit];
    if (u.offset == SIZE_MAX) u.offset = pi.offset;
    u.numel += pi.numel;
  }
  const size_t n = m.params.back().offset + m.params.back().numel;
  m.n_params = n;
  m.unit_params.resize(m.units.size());
  m.unit_grads.resize(m.units.size());
  if (buffers == GPT2Buffers::None) {
    m.owns_buffers = false;  // every unit pointer stays nullptr until set_unit_buffers
    return;
  }
  m.own_params.assign(n, 0.0f);
  m.own_grads.assign(n, 0.0f);
  for (size_t u = 0; u < m.units.size(); u++) set_unit_buffers((int)u, nullptr, nullptr);
}

GPT2::~GPT2() { delete impl_; }

const ModelDims& GPT2::dims() const { return impl_->d; }
const std::vector<ParamInfo>& GPT2::params() const { return impl_->params; }
size_t GPT2::num_params() const { return impl_->n_params; }
int GPT2::num_units() const { return (int)impl_->units.size(); }

UnitRange GPT2::unit_range(int unit) const {
  if (unit < 0 || unit >= num_units())
    throw RuntimeError("GPT2::unit_range: unit " + std::to_string(unit) + " out of range [0, " +
                       std::to_string(num_units()) + ")");
  return impl_->units[unit];
}

float* GPT2::param_data() { return impl_->owns_buffers ? impl_->own_params.data() : nullptr; }
const float* GPT2::param_data() const { return impl_->owns_buffers ? impl_->own_params.data() : nullptr; }
float* GPT2::grad_data() { return impl_->owns_buffers ? impl_->own_grads.data() : nullptr; }
size_t GPT2::buffer_bytes() const {
  return (impl_->own_params.capacity() + impl_->own_grads.capacity()) * sizeof(float);
}

void GPT2::release_own_buffers() {
  std::vector<float>().swap(impl_->own_params);
  std::vector<float>().swap(impl_->own_grads);
  impl_->owns_buffers = false;
  for (size_t u = 0; u < impl_->units.size(); u++) impl_->unit_params[u] = impl_->unit_grads[u] = nullptr;
}

void GPT2::set_unit_buffers(int unit, float* params, float* grads) {
  const UnitRange r = unit_range(unit);
  if (!impl_->owns_buffers) {
    // Stage 3: the caller provides every buffer; nullptr means "not available now".
    impl_->unit_params[unit] = params;
    impl_->unit_grads[unit] = grads;
    return;
  }
  impl_->unit_params[unit] = params ? params : impl_->own_params.data() + r.offset;
  impl_->unit_grads[unit] = grads ? grads : impl_->own_grads.data() + r.offset;
}

void GPT2::set_hooks(UnitHooks* hooks) { impl_->hooks = hooks; }

void init_param_values(const ParamInfo& p, size_t index, int n_layer, uint64_t seed, size_t begin, size_t n,
                       float* out) {
  if (begin > p.numel || n > p.numel - begin)
    throw RuntimeError("init_param_values: [" + std::to_string(begin) + ", " + std::to_string(begin + n) +
                       ") is outside " + p.name + " (" + std::to_string(p.numel) + " elements)");
  const bool is_ln = p.name.find(".ln_") != std::string::npos;
  const bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
  if (is_bias) {
    std::memset(out, 0, n * sizeof(float));
    return;
  }
  if (is_ln) {
    for (size_t k = 0; k < n; k++) out[k] = 1.0f;
    return;
  }
  const bool residual_proj = p.name.find("c_proj.weight") != std::string::npos;
  const double std = residual_proj ? 0.02 / std::sqrt(2.0 * n_layer) : 0.02;
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + (uint64_t)(index + 1) * 0xD1B54A32D192ED03ull;
  splitmix64(state);
  // Box-Muller: element pair (2j, 2j+1) comes from the stream's draws 2j and 2j+1. splitmix64's state is a counter
  // (one golden-ratio step per draw), so a range starts at its first pair without drawing the ones before it.
  const size_t end = begin + n;
  state += (uint64_t)(begin / 2) * 2 * 0x9E3779B97F4A7C15ull;
  for (size_t k = begin & ~size_t(1); k < end; k += 2) {
    const double u1 = uniform01(state), u2 = uniform01(state);
    const double r = std::sqrt(-2.0 * std::log(u1));
    if (k >= begin) out[k - begin] = (float)(std * r * std::cos(2.0 * M_PI * u2));
    if (k + 1 < end) out[k + 1 - begin] = (float)(std * r * std::sin(2.0 * M_PI * u2));
  }
}

void GPT2::init_weights(uint64_t seed) {
  Impl& m = *impl_;
  const int np = (int)m.params.size();
  // Each tensor draws from its own splitmix64 stream seeded by (seed, tensor index), so the values do not depend
  // on the thread count or on which tensors other threads fill.
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < np; i++)
    init_param_values(m.params[i], static_cast<size_t>(i), m.d.n_layer, seed, 0, m.params[i].numel, m.p(i));
}

float GPT2::forward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Impl& m = *impl_;
  const int V = m.d.vocab_size, C = m.d.n_embd, L = m.d.n_layer;
  if (B <= 0 || T <= 0 || T > m.d.block_size)
    throw RuntimeError("GPT2::forward: bad batch shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                       " (block_size " + std::to_string(m.d.block_size) + ")");
  const int BT = B * T;
  for (int i = 0; i < BT; i++) {
    if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < 0 || targets[i] >= V)))
      throw RuntimeError("GPT2::forward: token id out of range [0, " + std::to_string(V) + ") at position " +
                         std::to_string(i) + ": input " + std::to_string(inputs[i]) +
                         (targets ? ", target " + std::to_string(targets[i]) : std::string()));
  }
  if (!m.owns_buffers && !m.hooks)
    throw RuntimeError("GPT2::forward: the model has no buffers of its own (a layout, or released for stage 3) and "
                       "no unit hooks to point its units at buffers");
  m.allocate_activations(B, T);
  m.inputs.assign(inputs, inputs + BT);
  m.have_targets = targets != nullptr;
  if (targets) m.targets.assign(targets, targets + BT);

  m.before_fwd(0);
  cpu_k::encoder_forward(m.residual[0], inputs, m.p(0), m.p(1), B, T, C);
  m.after_fwd(0);
  for (int l = 0; l < L; l++) {
    m.before_fwd(l + 1);
    m.block_forward(l);
    m.after_fwd(l + 1);
  }
  const int lnf_w = (int)m.params.size() - 2, lnf_b = lnf_w + 1;
  m.before_fwd(L + 1);
  cpu_k::layernorm_forward(m.lnf, m.lnf_mean, m.lnf_rstd, m.residual[L], m.p(lnf_w), m.p(lnf_b), BT, C);
  m.after_fwd(L + 1);
  m.before_fwd(0);
  cpu_k::matmul_transposed_forward(m.logits, m.lnf, m.p(0), BT, C, V);
  m.after_fwd(0);
  if (!targets) return 0.0f;
  return cpu_k::cross_entropy_forward(m.losses, m.lse, m.logits, targets, BT, V);
}

void GPT2::backward(float grad_scale) {
  Impl& m = *impl_;
  if (m.B == 0 || !m.have_targets) throw RuntimeError("GPT2::backward: needs a preceding forward() with targets");
  const int B = m.B, T = m.T, BT = B * T, V = m.d.vocab_size, C = m.d.n_embd, L = m.d.n_layer;
  const int lnf_w = (int)m.params.size() - 2, lnf_b = lnf_w + 1;

  // Tied LM head. Unit 0's gradients are not complete until the embedding backward at the very end, so no
  // after_backward(0) here: the next before_backward(0) comes before the embedding backward.
  m.before_bwd(0);
  cpu_k::cross_entropy_backward(m.dlogits, m.logits, m.lse, m.targets.data(), grad_scale / (float)BT, BT, V);
  cpu_k::matmul_transposed_backward(m.dtmp_c, m.g(0), m.dlogits, m.lnf, m.p(0), BT, C, V);

  m.before_bwd(L + 1);
  std::memset(m.dres, 0, sizeof(float) * (size_t)BT * C);
  cpu_k::layernorm_backward(m.dres, m.g(lnf_w), m.g(lnf_b), m.dtmp_c, m.residual[L], m.p(lnf_w), m.lnf_mean, m.lnf_rstd,
                            BT, C);
  m.after_bwd(L + 1);
  for (int l = L - 1; l >= 0; l--) {
    m.before_bwd(l + 1);
    m.block_backward(l);
    m.after_bwd(l + 1);
  }
  m.before_bwd(0);
  cpu_k::encoder_backward(m.g(0), m.g(1), m.dres, m.inputs.data(), B, T, C);
  m.after_bwd(0);
}

void GPT2::zero_grad() {
  Impl& m = *impl_;
  for (size_t u = 0; u < m.units.size(); u++) std::memset(m.unit_grads[u], 0, m.units[u].numel * sizeof(float));
}

const float* GPT2::logits() const { return impl_->logits; }

size_t GPT2::activation_bytes() const { return impl_->acts_mem.size() * sizeof(float); }

}  // namespace zt
