#include "kernels/cuda/attention.h"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/storage.cuh"

namespace zt::cuda {
namespace {

constexpr int kRowBlock = 128;     // threads per (b, h, t) row of the reference kernels
constexpr int kFlashQueries = 64;  // queries per block of the flash forward, one per thread
constexpr int kFlashKeys = 64;     // keys per shared-memory tile

// The (batch, head) of a block (blockIdx.z, blockIdx.y in every kernel here) and where its data starts: qkv row t of
// the head is at qkv_offset + t * 3C (q), + C (k), + 2C (v).
struct HeadView {
  int b, h, hd, C3;
  float scale;        // 1 / sqrt(head dim)
  size_t qkv_offset;  // into qkv / dqkv
  size_t square;      // into [B,NH,T,T] buffers
  size_t row;         // into [B,NH,T] buffers
  __device__ HeadView(int T_, int C, int NH)
      : b(blockIdx.z),
        h(blockIdx.y),
        hd(C / NH),
        C3(3 * C),
        scale(1.0f / sqrtf((float)(C / NH))),
        qkv_offset((size_t)b * T_ * 3 * C + (size_t)h * (C / NH)),
        square(((size_t)b * NH + h) * T_ * T_),
        row(((size_t)b * NH + h) * T_) {}
};

template <typename T>
__device__ float dot_head(const T* a, const T* b, int hd) {
  float s = 0.0f;
  for (int i = 0; i < hd; i++) s += load_f32(a[i]) * load_f32(b[i]);
  return s;
}

// Grid (T, NH, B): one block per query row; scores, softmax and the weighted sum of values.
template <typename T>
__global__ void attention_forward_kernel(T* out, float* att, const T* qkv, int T_, int C, int NH) {
  const int t = blockIdx.x;
  const HeadView view(T_, C, NH);
  const int hd = view.hd, C3 = view.C3, b = view.b, h = view.h;
  const float scale = view.scale;
  const T* base = qkv + view.qkv_offset;
  const T* q = base + (size_t)t * C3;
  float* row = att + view.square + (size_t)t * T_;
  float m = -INFINITY;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const float s = dot_head(q, base + (size_t)t2 * C3 + C, hd) * scale;
    row[t2] = s;
    m = fmaxf(m, s);
  }
  m = block_max(m);
  float sum = 0.0f;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const float e = expf(row[t2] - m);
    row[t2] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) row[t2] *= inv;
  __syncthreads();  // the whole probability row is read below
  T* o = out + ((size_t)b * T_ + t) * C + (size_t)h * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float acc = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) acc += row[t2] * load_f32(base[(size_t)t2 * C3 + 2 * C + i]);
    o[i] = store_as<T>(acc);
  }
}

// Grid (ceil(T / kFlashQueries), NH, B); each thread owns one query and keeps its running max m, normalizer l and
// unnormalized output o in registers while the block streams key/value tiles through shared memory.
template <int HD, typename T>
__global__ void __launch_bounds__(kFlashQueries) flash_forward_kernel(T* out, float* lse, const T* qkv, int T_, int C,
                                                                      int NH) {
  __shared__ float ks[kFlashKeys][HD];
  __shared__ float vs[kFlashKeys][HD];
  const int q0 = blockIdx.x * kFlashQueries, t = q0 + threadIdx.x;
  const HeadView view(T_, C, NH);
  const int C3 = view.C3, b = view.b, h = view.h;
  const float scale = view.scale;
  const T* base = qkv + view.qkv_offset;
  float q[HD], o[HD];
#pragma unroll
  for (int i = 0; i < HD; i++) {
    q[i] = t < T_ ? load_f32(base[(size_t)t * C3 + i]) : 0.0f;
    o[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int last_query = min(q0 + kFlashQueries, T_) - 1;
  for (int k0 = 0; k0 <= last_query; k0 += kFlashKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int idx = threadIdx.x; idx < kFlashKeys * HD; idx += blockDim.x) {
      const int j = idx / HD, i = idx % HD, key = k0 + j;
      const bool in = key < T_;
      ks[j][i] = in ? load_f32(base[(size_t)key * C3 + C + i]) : 0.0f;
      vs[j][i] = in ? load_f32(base[(size_t)key * C3 + 2 * C + i]) : 0.0f;
    }
    __syncthreads();
    if (t >= T_) continue;
    const int keys = min(kFlashKeys, t - k0 + 1);  // causal: keys k0 .. t
    for (int j = 0; j < keys; j++) {
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < HD; i++) s += q[i] * ks[j][i];
      s *= scale;
      if (s > m) {  // a new maximum rescales what was accumulated so far
        const float correction = expf(m - s);
        l *= correction;
#pragma unroll
        for (int i = 0; i < HD; i++) o[i] *= correction;
        m = s;
      }
      const float p = expf(s - m);
      l += p;
#pragma unroll
      for (int i = 0; i < HD; i++) o[i] += p * vs[j][i];
    }
  }
  if (t >= T_) return;
  const float inv = 1.0f / l;
  T* dst = out + ((size_t)b * T_ + t) * C + (size_t)h * HD;
#pragma unroll
  for (int i = 0; i < HD; i++) dst[i] = store_as<T>(o[i] * inv);
  lse[view.row + t] = m + logf(l);
}

// Grid (T, NH, B), one block per query row t. With P the probabilities (read from att, or recomputed from lse and
// stored into probs_out for the key pass): datt = dout . v, dscore = P (datt - sum(P datt)) * scale into dscore,
// then dq[t] = sum_t2 dscore[t2] k[t2].
template <typename T, bool kRecompute>
__global__ void attention_backward_rows_kernel(T* dqkv, float* dscore, float* probs_out, const T* dout, const T* qkv,
                                               const float* att, const float* lse, int T_, int C, int NH) {
  const int t = blockIdx.x;
  const HeadView view(T_, C, NH);
  const int hd = view.hd, C3 = view.C3, b = view.b, h = view.h;
  const float scale = view.scale;
  const T* base = qkv + view.qkv_offset;
  const T* q = base + (size_t)t * C3;
  const T* dy = dout + ((size_t)b * T_ + t) * C + (size_t)h * hd;
  float* ds_row = dscore + view.square + (size_t)t * T_;
  const float* p_row = kRecompute ? probs_out + view.square + (size_t)t * T_ : att + view.square + (size_t)t * T_;
  float dot_p_datt = 0.0f;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const float datt = dot_head(dy, base + (size_t)t2 * C3 + 2 * C, hd);
    float p;
    if constexpr (kRecompute) {
      p = expf(dot_head(q, base + (size_t)t2 * C3 + C, hd) * scale - lse[view.row + t]);
      probs_out[view.square + (size_t)t * T_ + t2] = p;
    } else {
      p = p_row[t2];
    }
    ds_row[t2] = datt;
    dot_p_datt += p * datt;
  }
  const float total = block_sum(dot_p_datt);
  // Each thread rewrites the entries it wrote above, so no barrier is needed before this loop.
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) ds_row[t2] = p_row[t2] * (ds_row[t2] - total) * scale;
  __syncthreads();
  T* dq = dqkv + view.qkv_offset + (size_t)t * C3;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float acc = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) acc += ds_row[t2] * load_f32(base[(size_t)t2 * C3 + C + i]);
    dq[i] = store_as<T>(acc);
  }
}

// Grid (T, NH, B), one block per key t2: dk[t2] = sum_{t >= t2} dscore[t, t2] q[t], dv[t2] = sum P[t, t2] dout[t].
template <typename T>
__global__ void attention_backward_keys_kernel(T* dqkv, const float* dscore, const float* probs, const T* dout,
                                               const T* qkv, int T_, int C, int NH) {
  const int t2 = blockIdx.x;
  const HeadView view(T_, C, NH);
  const int hd = view.hd, C3 = view.C3, b = view.b, h = view.h;
  const T* base = qkv + view.qkv_offset;
  const T* dy = dout + (size_t)b * T_ * C + (size_t)h * hd;
  T* d = dqkv + view.qkv_offset + (size_t)t2 * C3;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float dk = 0.0f, dv = 0.0f;
    for (int t = t2; t < T_; t++) {
      const size_t at = view.square + (size_t)t * T_ + t2;
      dk += dscore[at] * load_f32(base[(size_t)t * C3 + i]);
      dv += probs[at] * load_f32(dy[(size_t)t * C + i]);
    }
    d[C + i] = store_as<T>(dk);
    d[2 * C + i] = store_as<T>(dv);
  }
}

void check_heads(int C, int NH) {
  if (NH <= 0 || C % NH != 0)
    throw RuntimeError("attention: n_embd " + std::to_string(C) + " is not a multiple of n_head " +
                       std::to_string(NH));
}

dim3 row_grid(int B, int T_, int NH) { return dim3((unsigned)T_, (unsigned)NH, (unsigned)B); }

}  // namespace

size_t attention_backward_scratch_floats(int B, int T_, int NH, bool flash) {
  return (size_t)B * NH * T_ * T_ * (flash ? 2 : 1);
}

bool flash_attention_supports(int head_dim) { return head_dim == 32 || head_dim == 64; }

template <typename T>
void attention_forward(T* out, float* att, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
  check_heads(C, NH);
  if ((size_t)B * T_ == 0) return;
  attention_forward_kernel<<<row_grid(B, T_, NH), kRowBlock, 0, stream>>>(out, att, qkv, T_, C, NH);
  ZT_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

template <typename T>
void attention_backward(T* dqkv, float* scratch, const T* dout, const T* qkv, const float* att, int B, int T_, int C,
                        int NH, cudaStream_t stream) {
  check_heads(C, NH);
  if ((size_t)B * T_ == 0) return;
  attention_backward_rows_kernel<T, false><<<row_grid(B, T_, NH), kRowBlock, 0, stream>>>(
      dqkv, scratch, nullptr, dout, qkv, att, nullptr, T_, C, NH);
  ZT_CUDA_CHECK_LAUNCH("attention_backward_rows_kernel");
  attention_backward_keys_kernel<<<row_grid(B, T_, NH), 64, 0, stream>>>(dqkv, scratch, att, dout, qkv, T_, C, NH);
  ZT_CUDA_CHECK_LAUNCH("attention_backward_keys_kernel");
}

template <typename T>
void attention_forward_flash(T* out, float* lse, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
  check_heads(C, NH);
  const int hd = C / NH;
  if (!flash_attention_supports(hd))
    throw RuntimeError("flash attention supports head dims 32 and 64, not " + std::to_string(hd) +
                       " (use the reference attention_forward)");
  if ((size_t)B * T_ == 0) return;
  const dim3 grid((unsigned)((T_ + kFlashQueries - 1) / kFlashQueries), (unsigned)NH, (unsigned)B);
  if (hd == 64) {
    flash_forward_kernel<64, T><<<grid, kFlashQueries, 0, stream>>>(out, lse, qkv, T_, C, NH);
  } else {
    flash_forward_kernel<32, T><<<grid, kFlashQueries, 0, stream>>>(out, lse, qkv, T_, C, NH);
  }
  ZT_CUDA_CHECK_LAUNCH("flash_forward_kernel");
}

template <typename T>
void attention_backward_flash(T* dqkv, float* scratch, const T* dout, const T* qkv, const float* lse, int B, int T_,
                              int C, int NH, cudaStream_t stream) {
  check_heads(C, NH);
  if ((size_t)B * T_ == 0) return;
  float* probs = scratch + attention_backward_scratch_floats(B, T_, NH, false);
  attention_backward_rows_kernel<T, true><<<row_grid(B, T_, NH), kRowBlock, 0, stream>>>(
      dqkv, scratch, probs, dout, qkv, nullptr, lse, T_, C, NH);
  ZT_CUDA_CHECK_LAUNCH("attention_backward_rows_kernel (flash)");
  attention_backward_keys_kernel<<<row_grid(B, T_, NH), 64, 0, stream>>>(dqkv, scratch, probs, dout, qkv, T_, C, NH);
  ZT_CUDA_CHECK_LAUNCH("attention_backward_keys_kernel (flash)");
}

#define ZT_INSTANTIATE(T)                                                                                          \
  template void attention_forward<T>(T*, float*, const T*, int, int, int, int, cudaStream_t);                     \
  template void attention_backward<T>(T*, float*, const T*, const T*, const float*, int, int, int, int,            \
                                      cudaStream_t);                                                               \
  template void attention_forward_flash<T>(T*, float*, const T*, int, int, int, int, cudaStream_t);               \
  template void attention_backward_flash<T>(T*, float*, const T*, const T*, const float*, int, int, int, int,      \
                                            cudaStream_t);
ZT_FOR_STORAGE_TYPES(ZT_INSTANTIATE)
#undef ZT_INSTANTIATE

}  // namespace zt::cuda
