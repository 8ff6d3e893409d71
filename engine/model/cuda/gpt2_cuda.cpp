#include "engine/model/cuda/gpt2_cuda.h"

#include <string>

#include "engine/base/error.h"
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

struct BlockActs {
  float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att_or_lse, *residual2, *ln2, *ln2_mean, *ln2_rstd, *fch,
      *fch_gelu;
};

}  // namespace

struct GPT2Cuda::Impl {
  ModelDims d;
  bool flash = false;
  std::vector<size_t> offsets;  // of each parameter in the flat buffer
  size_t n_params = 0;
  CachingAllocator alloc{make_cuda_memory_backend()};
  MatmulLt lt;
  cudaStream_t stream = nullptr;
  float *params = nullptr, *grads = nullptr;

  int B = 0, T = 0;
  void* acts_mem = nullptr;
  std::vector<float*> residual;
  std::vector<BlockActs> blocks;
  float *tmp_c = nullptr, *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr,
        *lse = nullptr, *losses = nullptr, *dres = nullptr, *dtmp_c = nullptr, *dqkv = nullptr, *dfch = nullptr,
        *att_scratch = nullptr;
  int32_t *inputs = nullptr, *targets = nullptr;
  bool have_targets = false;

  float* p(size_t i) { return params + offsets[i]; }
  float* g(size_t i) { return grads + offsets[i]; }
  size_t bp(int l, BlockParam w) const { return block_param_index(l, w); }
  size_t lnf_w() const { return offsets.size() - 2; }

  void allocate_activations(int newB, int newT);
  void matmul_forward(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC);
  void matmul_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w, int N,
                       int C, int OC);
  void block_forward(int l);
  void block_backward(int l);
};

void GPT2Cuda::Impl::allocate_activations(int newB, int newT) {
  if (newB == B && newT == T) return;
  alloc.free(acts_mem);
  acts_mem = nullptr;
  B = newB;
  T = newT;
  const size_t BT = (size_t)B * T, C = d.n_embd, V = d.vocab_size, NH = d.n_head, L = d.n_layer;
  const size_t att_floats = flash ? (size_t)B * NH * T : (size_t)B * NH * T * T;
  const size_t block_floats = BT * C * 5 + BT * 4 + BT * 3 * C + att_floats + 2 * BT * 4 * C;
  const size_t scratch = attention_backward_scratch_floats(B, T, (int)NH, flash);
  const size_t total = (L + 1) * BT * C + L * block_floats + 2 * BT * C + 2 * BT + BT * V + 2 * BT + 2 * BT * C +
                       BT * 3 * C + BT * 4 * C + scratch + 2 * BT /*token ids*/;
  acts_mem = alloc.allocate(total * sizeof(float));
  float* cur = static_cast<float*>(acts_mem);
  auto take = [&](size_t n) {
    float* r = cur;
    cur += n;
    return r;
  };
  residual.assign(L + 1, nullptr);
  for (auto& r : residual) r = take(BT * C);
  blocks.assign(L, BlockActs{});
  for (auto& a : blocks) {
    a.ln1 = take(BT * C);
    a.ln1_mean = take(BT);
    a.ln1_rstd = take(BT);
    a.qkv = take(BT * 3 * C);
    a.atty = take(BT * C);
    a.att_or_lse = take(att_floats);
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
  logits = take(BT * V);  // becomes dlogits in backward (cross-entropy backward runs in place)
  lse = take(BT);
  losses = take(BT);
  dres = take(BT * C);
  dtmp_c = take(BT * C);
  dqkv = take(BT * 3 * C);
  dfch = take(BT * 4 * C);
  att_scratch = take(scratch);
  inputs = reinterpret_cast<int32_t*>(take(BT));
  targets = reinterpret_cast<int32_t*>(take(BT));
  if (cur != static_cast<float*>(acts_mem) + total)
    throw RuntimeError("GPT2Cuda: activation layout size mismatch (internal)");
}

// Conv1D: out[N,OC] = inp[N,C] @ w[C,OC] + b.
void GPT2Cuda::Impl::matmul_forward(float* out, const float* inp, const float* w, const float* b, int N, int C,
                                    int OC) {
  lt.gemm<float>(false, false, N, OC, C, 1.0f, inp, C, w, OC, 0.0f, out, OC, MatmulEpilogue::kBias, b, nullptr,
                 stream);
}

// As cpu::matmul_backward: dinp OVERWRITTEN, dw and db ACCUMULATED.
void GPT2Cuda::Impl::matmul_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                                     const float* w, int N, int C, int OC) {
  lt.gemm<float>(false, true, N, C, OC, 1.0f, dout, OC, w, OC, 0.0f, dinp, C, MatmulEpilogue::kNone, nullptr,
                 nullptr, stream);
  lt.gemm<float>(true, false, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, OC, MatmulEpilogue::kNone, nullptr,
                 nullptr, stream);
  bias_backward(db, dout, N, OC, stream);
}

void GPT2Cuda::Impl::block_forward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  BlockActs& a = blocks[l];
  const float* x = residual[l];
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
}

// dres: d(loss)/d(block output) on entry, d(loss)/d(block input) on exit (the CPU model's scheme).
void GPT2Cuda::Impl::block_backward(int l) {
  const int BT = B * T, C = d.n_embd, NH = d.n_head;
  BlockActs& a = blocks[l];
  const float* x = residual[l];
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

GPT2Cuda::GPT2Cuda(const ModelDims& dims, const std::vector<ParamInfo>& layout, bool flash_attention)
    : impl_((check_layout(dims, layout, flash_attention), std::make_unique<Impl>())) {
  Impl& m = *impl_;
  m.d = dims;
  m.flash = flash_attention;
  for (const ParamInfo& pi : layout) m.offsets.push_back(pi.offset);
  m.n_params = layout.back().offset + layout.back().numel;
  ZT_CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  m.params = static_cast<float*>(m.alloc.allocate(m.n_params * sizeof(float)));
  m.grads = static_cast<float*>(m.alloc.allocate(m.n_params * sizeof(float)));
  zero_grad();
}

GPT2Cuda::~GPT2Cuda() {
  if (impl_->stream) {
    cudaStreamSynchronize(impl_->stream);
    cudaStreamDestroy(impl_->stream);
  }
}

size_t GPT2Cuda::num_params() const { return impl_->n_params; }

void GPT2Cuda::upload_params(const float* host) {
  ZT_CUDA_CHECK(cudaMemcpyAsync(impl_->params, host, impl_->n_params * sizeof(float), cudaMemcpyHostToDevice,
                                impl_->stream));
  synchronize();
}

void GPT2Cuda::download_grads(float* host) {
  ZT_CUDA_CHECK(cudaMemcpyAsync(host, impl_->grads, impl_->n_params * sizeof(float), cudaMemcpyDeviceToHost,
                                impl_->stream));
  synchronize();
}

void GPT2Cuda::zero_grad() {
  ZT_CUDA_CHECK(cudaMemsetAsync(impl_->grads, 0, impl_->n_params * sizeof(float), impl_->stream));
}

float* GPT2Cuda::device_params() { return impl_->params; }
float* GPT2Cuda::device_grads() { return impl_->grads; }
void* GPT2Cuda::stream() { return impl_->stream; }
CachingAllocator& GPT2Cuda::allocator() { return impl_->alloc; }

void GPT2Cuda::synchronize() { ZT_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

float GPT2Cuda::forward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Impl& m = *impl_;
  const int V = m.d.vocab_size, C = m.d.n_embd, L = m.d.n_layer;
  if (B <= 0 || T <= 0 || T > m.d.block_size)
    throw RuntimeError("GPT2Cuda::forward: bad batch shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                       " (block_size " + std::to_string(m.d.block_size) + ")");
  const int BT = B * T;
  for (int i = 0; i < BT; i++) {
    if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < 0 || targets[i] >= V)))
      throw RuntimeError("GPT2Cuda::forward: token id out of range [0, " + std::to_string(V) + ") at position " +
                         std::to_string(i));
  }
  m.allocate_activations(B, T);
  ZT_CUDA_CHECK(cudaMemcpyAsync(m.inputs, inputs, BT * sizeof(int32_t), cudaMemcpyHostToDevice, m.stream));
  m.have_targets = targets != nullptr;
  if (targets)
    ZT_CUDA_CHECK(cudaMemcpyAsync(m.targets, targets, BT * sizeof(int32_t), cudaMemcpyHostToDevice, m.stream));

  encoder_forward(m.residual[0], m.inputs, m.p(0), m.p(1), B, T, C, m.stream);
  for (int l = 0; l < L; l++) m.block_forward(l);
  layernorm_forward(m.lnf, m.lnf_mean, m.lnf_rstd, m.residual[L], m.p(m.lnf_w()), m.p(m.lnf_w() + 1), BT, C,
                    m.stream);
  m.lt.gemm<float>(false, true, BT, V, C, 1.0f, m.lnf, C, m.p(0), C, 0.0f, m.logits, V, MatmulEpilogue::kNone,
                   nullptr, nullptr, m.stream);
  if (!targets) return 0.0f;
  cross_entropy_forward(m.losses, m.lse, m.logits, m.targets, BT, V, m.stream);
  std::vector<float> losses(BT);
  ZT_CUDA_CHECK(cudaMemcpyAsync(losses.data(), m.losses, BT * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
  synchronize();
  double total = 0;  // in row order, in double, as the CPU model
  for (float l : losses) total += l;
  return (float)(total / BT);
}

void GPT2Cuda::backward(float grad_scale) {
  Impl& m = *impl_;
  if (m.B == 0 || !m.have_targets) throw RuntimeError("GPT2Cuda::backward: needs a preceding forward() with targets");
  const int B = m.B, T = m.T, BT = B * T, V = m.d.vocab_size, C = m.d.n_embd, L = m.d.n_layer;
  float* dlogits = m.logits;
  cross_entropy_backward(dlogits, m.logits, m.lse, m.targets, grad_scale / (float)BT, BT, V, m.stream);
  // Tied LM head: dlnf = dlogits @ wte; dwte += dlogits^T @ lnf.
  m.lt.gemm<float>(false, false, BT, C, V, 1.0f, dlogits, V, m.p(0), C, 0.0f, m.dtmp_c, C, MatmulEpilogue::kNone,
                   nullptr, nullptr, m.stream);
  m.lt.gemm<float>(true, false, V, C, BT, 1.0f, dlogits, V, m.lnf, C, 1.0f, m.g(0), C, MatmulEpilogue::kNone, nullptr,
                   nullptr, m.stream);
  ZT_CUDA_CHECK(cudaMemsetAsync(m.dres, 0, sizeof(float) * (size_t)BT * C, m.stream));
  layernorm_backward(m.dres, m.g(m.lnf_w()), m.g(m.lnf_w() + 1), m.dtmp_c, m.residual[L], m.p(m.lnf_w()),
                     m.lnf_mean, m.lnf_rstd, BT, C, m.stream);
  for (int l = L - 1; l >= 0; l--) m.block_backward(l);
  encoder_backward(m.g(0), m.g(1), m.dres, m.inputs, B, T, C, m.stream);
  // The logits were overwritten by their gradient: a later backward needs a new forward.
  m.have_targets = false;
}

}  // namespace zt::cuda
