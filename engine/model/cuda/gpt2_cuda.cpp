#include "engine/model/cuda/gpt2_cuda.h"

#include <algorithm>
#include <string>

#include "engine/base/error.h"
#include "kernels/cpu/half_convert.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_memory_backend.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/matmul_lt.h"

namespace zt::cuda {
namespace {

// Parameters of a block in the CPU model's order (engine/model/gpt2.cpp, Hugging Face's order).
enum BlockParam { kLn1W, kLn1B, kAttnW, kAttnB, kAttnProjW, kAttnProjB, kLn2W, kLn2B, kFcW, kFcB, kFcProjW, kFcProjB,
                  kNumBlockParams };
const char* const kBlockParamSuffix[kNumBlockParams] = {
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

size_t block_param_index(int layer, int which) { return 2 + (size_t)layer * kNumBlockParams + which; }

// Checked before any device resource is taken, so a wrong layout fails the same with or without a GPU.
void check_layout(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention) {
  const size_t expected = block_param_index(dims.n_layer, 0) + 2;
  if (layout.size() != expected)
    throw RuntimeError("GPT2Cuda: the layout has " + std::to_string(layout.size()) + " parameters, the dims need " +
                       std::to_string(expected));
  auto expect_name = [&](size_t i, const char* suffix) {
    if (!ends_with(layout[i].name, suffix))
      throw RuntimeError("GPT2Cuda: parameter " + std::to_string(i) + " of the layout is " + layout[i].name +
                         ", expected ..." + suffix);
  };
  expect_name(0, "wte.weight");
  expect_name(1, "wpe.weight");
  for (int l = 0; l < dims.n_layer; l++)
    for (int w = 0; w < kNumBlockParams; w++) expect_name(block_param_index(l, w), kBlockParamSuffix[w]);
  expect_name(layout.size() - 2, "ln_f.weight");
  if (flash_attention && !flash_attention_supports(dims.n_embd / dims.n_head))
    throw RuntimeError("GPT2Cuda: flash attention does not support head dim " +
                       std::to_string(dims.n_embd / dims.n_head));
}

// Carves typed buffers out of one allocation, each at a 256-byte boundary (cuBLASLt's fast kernels want 16-byte
// aligned operands). A carver without a base only measures: the same carving runs once to size the allocation and
// once to hand out the pointers, so the two cannot disagree.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <typename U>
  U* take(size_t n) {
    at_ = (at_ + 255) & ~size_t(255);
    U* p = base_ ? reinterpret_cast<U*>(base_ + at_) : nullptr;
    at_ += n * sizeof(U);
    return p;
  }
  size_t bytes() const { return at_; }

 private:
  char* base_;
  size_t at_ = 0;
};

}  // namespace

const char* storage_name(Storage s) {
  switch (s) {
    case Storage::F32:
      return "fp32";
    case Storage::BF16:
      return "bf16";
    case Storage::F16:
      return "fp16";
  }
  return "?";
}

size_t storage_bytes(Storage s) { return s == Storage::F32 ? 4 : 2; }

// What every storage type shares: the layout, the device, the flat parameter and gradient buffers.
struct GPT2Cuda::Impl {
  ModelDims d;
  bool flash = false;
  bool ckpt = false;  // activation checkpointing: one block's activations, recomputed in backward
  Storage storage = Storage::F32;
  std::vector<size_t> offsets;  // of each parameter in the flat buffer
  size_t n_params = 0;
  CachingAllocator alloc{make_cuda_memory_backend()};
  MatmulLt lt;
  cudaStream_t stream = nullptr;
  void *params = nullptr, *grads = nullptr;  // the flat buffers; nullptr without own buffers
  // Per unit (the CPU model's units): where its parameters and gradients are now, and where it starts in the flat
  // layout. Without hooks these are the flat buffers' slices, so p() and g() are the flat addresses.
  std::vector<int> unit_of;  // of each parameter
  std::vector<size_t> unit_offset;
  std::vector<void*> unit_params, unit_grads;
  UnitHooks* hooks = nullptr;

  void hook(void (UnitHooks::*call)(int), int unit) {
    if (hooks) (hooks->*call)(unit);
  }

  virtual ~Impl() = default;
  virtual size_t activation_bytes() const = 0;
  virtual float forward(const int32_t* inputs, const int32_t* targets, int B, int T) = 0;
  virtual void backward(float grad_scale) = 0;
};

namespace {

// The model in storage type S (float, __nv_bfloat16, __half).
template <typename S>
struct TypedModel final : GPT2Cuda::Impl {
  struct BlockActs {
    S *ln1, *qkv, *atty, *residual2, *ln2, *fch, *fch_gelu;
    float *ln1_mean, *ln1_rstd, *att_or_lse, *ln2_mean, *ln2_rstd;
  };

  int B = 0, T = 0;
  void* acts_mem = nullptr;
  size_t acts_bytes = 0;
  std::vector<S*> residual;           // n_layer + 1 residual streams: residual[l] is block l's input
  std::vector<BlockActs> blocks;      // n_layer sets, or one shared set with checkpointing
  int scratch_layer = -1;             // with checkpointing: which block's activations the shared set holds
  S *tmp_c = nullptr, *lnf = nullptr, *logits = nullptr, *dres = nullptr, *dtmp_c = nullptr, *dqkv = nullptr,
    *dfch = nullptr;
  float *lnf_mean = nullptr, *lnf_rstd = nullptr, *lse = nullptr, *losses = nullptr, *att_scratch = nullptr;
  int32_t *inputs = nullptr, *targets = nullptr;
  bool have_targets = false;

  S* p(size_t i) { return static_cast<S*>(unit_params[unit_of[i]]) + (offsets[i] - unit_offset[unit_of[i]]); }
  S* g(size_t i) { return static_cast<S*>(unit_grads[unit_of[i]]) + (offsets[i] - unit_offset[unit_of[i]]); }
  size_t bp(int l, BlockParam w) const { return block_param_index(l, w); }
  size_t lnf_w() const { return offsets.size() - 2; }

  float forward(const int32_t* host_inputs, const int32_t* host_targets, int newB, int newT) override;
  void backward(float grad_scale) override;
  size_t activation_bytes() const override { return acts_bytes; }
  BlockActs& acts_of(int l) { return blocks[ckpt ? 0 : l]; }
  void carve_activations(Carver& c);
  void allocate_activations(int newB, int newT);
  void matmul_forward(S* out, const S* inp, const S* w, const S* b, int N, int C, int OC);
  void matmul_backward(S* dinp, S* dw, S* db, const S* dout, const S* inp, const S* w, int N, int C, int OC);
  void block_forward(int l);
  void block_backward(int l);
};

template <typename S>
void TypedModel<S>::carve_activations(Carver& c) {
  const size_t BT = (size_t)B * T, C = d.n_embd, V = d.vocab_size, NH = d.n_head, L = d.n_layer;
  const size_t att_floats = flash ? (size_t)B * NH * T : (size_t)B * NH * T * T;
  residual.assign(L + 1, nullptr);
  for (auto& r : residual) r = c.take<S>(BT * C);
  blocks.assign(ckpt ? 1 : L, BlockActs{});
  for (auto& a : blocks) {
    a.ln1 = c.take<S>(BT * C);
    a.ln1_mean = c.take<float>(BT);
    a.ln1_rstd = c.take<float>(BT);
    a.qkv = c.take<S>(BT * 3 * C);
    a.atty = c.take<S>(BT * C);
    a.att_or_lse = c.take<float>(att_floats);
    a.residual2 = c.take<S>(BT * C);
    a.ln2 = c.take<S>(BT * C);
    a.ln2_mean = c.take<float>(BT);
    a.ln2_rstd = c.take<float>(BT);
    a.fch = c.take<S>(BT * 4 * C);
    a.fch_gelu = c.take<S>(BT * 4 * C);
  }
  tmp_c = c.take<S>(BT * C);
  lnf = c.take<S>(BT * C);
  lnf_mean = c.take<float>(BT);
  lnf_rstd = c.take<float>(BT);
  logits = c.take<S>(BT * V);  // becomes dlogits in backward (cross-entropy backward runs in place)
  lse = c.take<float>(BT);
  losses = c.take<float>(BT);
  dres = c.take<S>(BT * C);
  dtmp_c = c.take<S>(BT * C);
  dqkv = c.take<S>(BT * 3 * C);
  dfch = c.take<S>(BT * 4 * C);
  att_scratch = c.take<float>(attention_backward_scratch_floats(B, T, (int)NH, flash));
  inputs = c.take<int32_t>(BT);
  targets = c.take<int32_t>(BT);
}

template <typename S>
void TypedModel<S>::allocate_activations(int newB, int newT) {
  if (newB == B && newT == T) return;
  alloc.free(acts_mem);
  acts_mem = nullptr;
  B = newB;
  T = newT;
  Carver measure(nullptr);
  carve_activations(measure);
  acts_bytes = measure.bytes();
  acts_mem = alloc.allocate(acts_bytes);
  Carver carve(static_cast<char*>(acts_mem));
  carve_activations(carve);
  scratch_layer = -1;
}

// Conv1D: out[N,OC] = inp[N,C] @ w[C,OC] + b.
template <typename S>
void TypedModel<S>::matmul_forward(S* out, const S* inp, const S* w, const S* b, int N, int C, int OC) {
  lt.gemm<S>(false, false, N, OC, C, 1.0f, inp, C, w, OC, 0.0f, out, OC, MatmulEpilogue::kBias, b, nullptr, stream);
}

// As cpu::matmul_backward: dinp OVERWRITTEN, dw and db ACCUMULATED.
template <typename S>
void TypedModel<S>::matmul_backward(S* dinp, S* dw, S* db, const S* dout, const S* inp, const S* w, int N, int C,
                                    int OC) {
  lt.gemm<S>(false, true, N, C, OC, 1.0f, dout, OC, w, OC, 0.0f, dinp, C, MatmulEpilogue::kNone, nullptr, nullptr,
             stream);
  lt.gemm<S>(true, false, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, OC, MatmulEpilogue::kNone, nullptr, nullptr,
             stream);
  bias_backward(db, dout, N, OC, stream);
}

template <typename S>
void TypedModel<S>::block_forward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  BlockActs& a = acts_of(l);
  const S* x = residual[l];
  layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p(bp(l, kLn1W)), p(bp(l, kLn1B)), BT, C, stream);
  matmul_forward(a.qkv, a.ln1, p(bp(l, kAttnW)), p(bp(l, kAttnB)), BT, C, 3 * C);
  if (flash) {
    attention_forward_flash(a.atty, a.att_or_lse, a.qkv, B, T, C, NH, stream);
  } else {
    attention_forward(a.atty, a.att_or_lse, a.qkv, B, T, C, NH, stream);
  }
  matmul_forward(tmp_c, a.atty, p(bp(l, kAttnProjW)), p(bp(l, kAttnProjB)), BT, C, C);
  residual_forward(a.residual2, x, tmp_c, (size_t)BT * C, stream);
  layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, p(bp(l, kLn2W)), p(bp(l, kLn2B)), BT, C, stream);
  matmul_forward(a.fch, a.ln2, p(bp(l, kFcW)), p(bp(l, kFcB)), BT, C, 4 * C);
  gelu_forward(a.fch_gelu, a.fch, (size_t)BT * 4 * C, stream);
  matmul_forward(tmp_c, a.fch_gelu, p(bp(l, kFcProjW)), p(bp(l, kFcProjB)), BT, 4 * C, C);
  residual_forward(residual[l + 1], a.residual2, tmp_c, (size_t)BT * C, stream);
  scratch_layer = l;
}

// dres: d(loss)/d(block output) on entry, d(loss)/d(block input) on exit (the CPU model's scheme).
// With checkpointing the block's forward runs again first, from the kept input residual[l], inside the caller's
// before_backward/after_backward of the block's unit (the CPU model's contract: stage 3 has the unit gathered then).
// The kernels are deterministic, so the recomputed activations equal the first forward's bit for bit; the recompute
// also rewrites residual[l + 1] and tmp_c with the values they had, which backward no longer reads.
template <typename S>
void TypedModel<S>::block_backward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  if (ckpt && scratch_layer != l) block_forward(l);
  BlockActs& a = acts_of(l);
  const S* x = residual[l];
  matmul_backward(dfch, g(bp(l, kFcProjW)), g(bp(l, kFcProjB)), dres, a.fch_gelu, p(bp(l, kFcProjW)), BT, 4 * C, C);
  gelu_backward(dfch, a.fch, dfch, (size_t)BT * 4 * C, stream);
  matmul_backward(dtmp_c, g(bp(l, kFcW)), g(bp(l, kFcB)), dfch, a.ln2, p(bp(l, kFcW)), BT, C, 4 * C);
  layernorm_backward(dres, g(bp(l, kLn2W)), g(bp(l, kLn2B)), dtmp_c, a.residual2, p(bp(l, kLn2W)), a.ln2_mean,
                     a.ln2_rstd, BT, C, stream);
  matmul_backward(dtmp_c, g(bp(l, kAttnProjW)), g(bp(l, kAttnProjB)), dres, a.atty, p(bp(l, kAttnProjW)), BT, C, C);
  if (flash) {
    attention_backward_flash(dqkv, att_scratch, dtmp_c, a.qkv, a.att_or_lse, B, T, C, NH, stream);
  } else {
    attention_backward(dqkv, att_scratch, dtmp_c, a.qkv, a.att_or_lse, B, T, C, NH, stream);
  }
  matmul_backward(dtmp_c, g(bp(l, kAttnW)), g(bp(l, kAttnB)), dqkv, a.ln1, p(bp(l, kAttnW)), BT, C, 3 * C);
  layernorm_backward(dres, g(bp(l, kLn1W)), g(bp(l, kLn1B)), dtmp_c, x, p(bp(l, kLn1W)), a.ln1_mean, a.ln1_rstd, BT,
                     C, stream);
}

template <typename S>
float TypedModel<S>::forward(const int32_t* host_inputs, const int32_t* host_targets, int newB, int newT) {
  const int V = d.vocab_size, C = d.n_embd, L = d.n_layer;
  if (newB <= 0 || newT <= 0 || newT > d.block_size)
    throw RuntimeError("GPT2Cuda::forward: bad batch shape B=" + std::to_string(newB) + " T=" + std::to_string(newT) +
                       " (block_size " + std::to_string(d.block_size) + ")");
  const int BT = newB * newT;
  for (int i = 0; i < BT; i++) {
    if (host_inputs[i] < 0 || host_inputs[i] >= V || (host_targets && (host_targets[i] < 0 || host_targets[i] >= V)))
      throw RuntimeError("GPT2Cuda::forward: token id out of range [0, " + std::to_string(V) + ") at position " +
                         std::to_string(i));
  }
  allocate_activations(newB, newT);
  ZT_CUDA_CHECK(cudaMemcpyAsync(inputs, host_inputs, BT * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  have_targets = host_targets != nullptr;
  if (host_targets)
    ZT_CUDA_CHECK(cudaMemcpyAsync(targets, host_targets, BT * sizeof(int32_t), cudaMemcpyHostToDevice, stream));

  // Units as the CPU model's (engine/model/gpt2.h): 0 embeddings (and the tied LM head), 1..L blocks, L+1 final LN.
  hook(&UnitHooks::before_forward, 0);
  encoder_forward(residual[0], inputs, p(0), p(1), B, T, C, stream);
  hook(&UnitHooks::after_forward, 0);
  for (int l = 0; l < L; l++) {
    hook(&UnitHooks::before_forward, l + 1);
    block_forward(l);
    hook(&UnitHooks::after_forward, l + 1);
  }
  hook(&UnitHooks::before_forward, L + 1);
  layernorm_forward(lnf, lnf_mean, lnf_rstd, residual[L], p(lnf_w()), p(lnf_w() + 1), BT, C, stream);
  hook(&UnitHooks::after_forward, L + 1);
  hook(&UnitHooks::before_forward, 0);
  lt.gemm<S>(false, true, BT, V, C, 1.0f, lnf, C, p(0), C, 0.0f, logits, V, MatmulEpilogue::kNone, nullptr, nullptr,
             stream);
  hook(&UnitHooks::after_forward, 0);
  if (!host_targets) return 0.0f;
  cross_entropy_forward(losses, lse, logits, targets, BT, V, stream);
  std::vector<float> host_losses(BT);
  ZT_CUDA_CHECK(cudaMemcpyAsync(host_losses.data(), losses, BT * sizeof(float), cudaMemcpyDeviceToHost, stream));
  ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
  double total = 0;  // in row order, in double, as the CPU model
  for (float l : host_losses) total += l;
  return (float)(total / BT);
}

template <typename S>
void TypedModel<S>::backward(float grad_scale) {
  if (B == 0 || !have_targets) throw RuntimeError("GPT2Cuda::backward: needs a preceding forward() with targets");
  const int BT = B * T, V = d.vocab_size, C = d.n_embd, L = d.n_layer;
  S* dlogits = logits;
  cross_entropy_backward(dlogits, logits, lse, targets, grad_scale / (float)BT, BT, V, stream);
  // Tied LM head: dlnf = dlogits @ wte; dwte += dlogits^T @ lnf. Unit 0 stays in use until the embeddings' backward.
  hook(&UnitHooks::before_backward, 0);
  lt.gemm<S>(false, false, BT, C, V, 1.0f, dlogits, V, p(0), C, 0.0f, dtmp_c, C, MatmulEpilogue::kNone, nullptr,
             nullptr, stream);
  lt.gemm<S>(true, false, V, C, BT, 1.0f, dlogits, V, lnf, C, 1.0f, g(0), C, MatmulEpilogue::kNone, nullptr, nullptr,
             stream);
  ZT_CUDA_CHECK(cudaMemsetAsync(dres, 0, sizeof(S) * (size_t)BT * C, stream));
  hook(&UnitHooks::before_backward, L + 1);
  layernorm_backward(dres, g(lnf_w()), g(lnf_w() + 1), dtmp_c, residual[L], p(lnf_w()), lnf_mean, lnf_rstd, BT, C,
                     stream);
  hook(&UnitHooks::after_backward, L + 1);
  for (int l = L - 1; l >= 0; l--) {
    hook(&UnitHooks::before_backward, l + 1);
    block_backward(l);
    hook(&UnitHooks::after_backward, l + 1);
  }
  hook(&UnitHooks::before_backward, 0);
  encoder_backward(g(0), g(1), dres, inputs, B, T, C, stream);
  hook(&UnitHooks::after_backward, 0);
  // The logits were overwritten by their gradient: a later backward needs a new forward.
  have_targets = false;
}

std::unique_ptr<GPT2Cuda::Impl> make_model(Storage storage) {
  switch (storage) {
    case Storage::F32:
      return std::make_unique<TypedModel<float>>();
    case Storage::BF16:
      return std::make_unique<TypedModel<__nv_bfloat16>>();
    case Storage::F16:
      return std::make_unique<TypedModel<__half>>();
  }
  throw RuntimeError("GPT2Cuda: unknown storage type");
}

}  // namespace

GPT2Cuda::GPT2Cuda(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention,
                   Storage storage, bool own_buffers, bool activation_checkpointing)
    : impl_((check_layout(dims, layout, flash_attention), make_model(storage))) {
  Impl& m = *impl_;
  m.d = dims;
  m.flash = flash_attention;
  m.ckpt = activation_checkpointing;
  m.storage = storage;
  for (const ParamInfo& pi : layout) m.offsets.push_back(pi.offset);
  m.n_params = layout.back().offset + layout.back().numel;
  for (const ParamInfo& pi : layout) {
    const size_t u = static_cast<size_t>(pi.unit);
    if (u >= m.unit_offset.size()) m.unit_offset.resize(u + 1, pi.offset);
    m.unit_offset[u] = std::min(m.unit_offset[u], pi.offset);
    m.unit_of.push_back(pi.unit);
  }
  ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  if (own_buffers) {
    m.params = m.alloc.allocate(m.n_params * storage_bytes(storage));
    m.grads = m.alloc.allocate(m.n_params * storage_bytes(storage));
  }
  m.unit_params.assign(m.unit_offset.size(), nullptr);
  m.unit_grads.assign(m.unit_offset.size(), nullptr);
  for (size_t u = 0; u < m.unit_offset.size(); ++u) set_unit_buffers(static_cast<int>(u), nullptr, nullptr);
  zero_grad();
}

GPT2Cuda::~GPT2Cuda() {
  if (impl_->stream) {
    cudaStreamSynchronize(impl_->stream);
    cudaStreamDestroy(impl_->stream);
  }
}

Storage GPT2Cuda::storage() const { return impl_->storage; }
size_t GPT2Cuda::num_params() const { return impl_->n_params; }

// 16-bit storage travels to and from the host as bit patterns, converted on the host with the CPU engines'
// round-to-nearest-even (kernels/cpu/half_convert.h).
namespace {

void require_own_buffers(const GPT2Cuda::Impl& m, const char* what) {
  if (!m.params)
    throw RuntimeError(std::string("GPT2Cuda::") + what +
                       ": the model has no full-size buffers (ZeRO stage 3 keeps them partitioned in its engine)");
}

}  // namespace

void GPT2Cuda::upload_params(const float* host) { upload_params(0, impl_->n_params, host); }

void GPT2Cuda::upload_params(size_t offset, size_t n, const float* host) {
  Impl& m = *impl_;
  require_own_buffers(m, "upload_params");
  if (offset > m.n_params || n > m.n_params - offset)
    throw RuntimeError("GPT2Cuda::upload_params: [" + std::to_string(offset) + ", " + std::to_string(offset + n) +
                       ") is outside the model's " + std::to_string(m.n_params) + " parameters");
  char* dst = static_cast<char*>(m.params) + offset * storage_bytes(m.storage);
  if (m.storage == Storage::F32) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, m.stream));
    synchronize();
    return;
  }
  std::vector<uint16_t> bits(n);
  if (m.storage == Storage::BF16)
    float_to_bf16_array(host, bits.data(), n);
  else
    float_to_fp16_array(host, bits.data(), n);
  ZT_CUDA_CHECK(cudaMemcpyAsync(dst, bits.data(), n * sizeof(uint16_t), cudaMemcpyHostToDevice, m.stream));
  synchronize();
}

namespace {

void download_flat(GPT2Cuda::Impl& m, const void* dev, float* host) {
  require_own_buffers(m, "download");
  if (m.storage == Storage::F32) {
    ZT_CUDA_CHECK(cudaMemcpyAsync(host, dev, m.n_params * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
    ZT_CUDA_CHECK(cudaStreamSynchronize(m.stream));
    return;
  }
  std::vector<uint16_t> bits(m.n_params);
  ZT_CUDA_CHECK(cudaMemcpyAsync(bits.data(), dev, m.n_params * sizeof(uint16_t), cudaMemcpyDeviceToHost, m.stream));
  ZT_CUDA_CHECK(cudaStreamSynchronize(m.stream));
  if (m.storage == Storage::BF16)
    bf16_to_float_array(bits.data(), host, m.n_params);
  else
    fp16_to_float_array(bits.data(), host, m.n_params);
}

}  // namespace

void GPT2Cuda::download_params(float* host) { download_flat(*impl_, impl_->params, host); }
void GPT2Cuda::download_grads(float* host) {
  if (!impl_->grads) throw RuntimeError("GPT2Cuda::download_grads: the model has no full-size gradient buffer");
  download_flat(*impl_, impl_->grads, host);
}

void GPT2Cuda::zero_grad() {
  if (!impl_->grads) return;  // stage 3: unit gradient buffers come zeroed from the engine
  ZT_CUDA_CHECK(
      cudaMemsetAsync(impl_->grads, 0, impl_->n_params * storage_bytes(impl_->storage), impl_->stream));
}

void GPT2Cuda::set_hooks(UnitHooks* hooks) { impl_->hooks = hooks; }

void GPT2Cuda::set_unit_buffers(int unit, void* params, void* grads) {
  Impl& m = *impl_;
  if (unit < 0 || static_cast<size_t>(unit) >= m.unit_offset.size())
    throw RuntimeError("GPT2Cuda::set_unit_buffers: no unit " + std::to_string(unit));
  const size_t u = static_cast<size_t>(unit), at = m.unit_offset[u] * storage_bytes(m.storage);
  m.unit_params[u] = params ? params : m.params ? static_cast<char*>(m.params) + at : nullptr;
  m.unit_grads[u] = grads ? grads : m.grads ? static_cast<char*>(m.grads) + at : nullptr;
}

void GPT2Cuda::drop_full_grads() {
  Impl& m = *impl_;
  if (!m.grads) return;
  synchronize();  // no queued kernel still writes it
  const uintptr_t begin = reinterpret_cast<uintptr_t>(m.grads), end = begin + m.n_params * storage_bytes(m.storage);
  for (void*& g : m.unit_grads)
    if (reinterpret_cast<uintptr_t>(g) >= begin && reinterpret_cast<uintptr_t>(g) < end) g = nullptr;
  m.alloc.free(m.grads);
  m.grads = nullptr;
}

void* GPT2Cuda::device_params() { return impl_->params; }
void* GPT2Cuda::device_grads() { return impl_->grads; }
void* GPT2Cuda::stream() { return impl_->stream; }
CachingAllocator& GPT2Cuda::allocator() { return impl_->alloc; }

void GPT2Cuda::synchronize() { ZT_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

float GPT2Cuda::forward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  return impl_->forward(inputs, targets, B, T);
}

void GPT2Cuda::backward(float grad_scale) { impl_->backward(grad_scale); }
size_t GPT2Cuda::activation_bytes() const { return impl_->activation_bytes(); }

}  // namespace zt::cuda
