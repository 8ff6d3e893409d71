#pragma once
// GPT-2 (pre-LayerNorm, tied LM head) over one flat fp32 parameter buffer, laid out unit by unit.
// A "layer unit" is what ZeRO stage 3 gathers and frees: unit 0 = embeddings (wte, wpe), units 1..L = blocks,
// unit L+1 = final LayerNorm. Each unit's parameters are one contiguous range of the flat layout, so the engine
// can point a unit at any buffer (its own slice, or a stage-3 gathered copy) with set_unit_buffers().
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace zt {

struct ModelDims {
  int n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, block_size = 0;
};

// Dims from a preset name or from the explicit fields; throws ConfigError naming the bad field.
ModelDims resolve_model_dims(const ModelConfig& cfg);

struct ParamInfo {
  std::string name;            // Hugging Face GPT-2 name, e.g. "transformer.h.3.attn.c_attn.weight"
  std::vector<int64_t> shape;  // Hugging Face shape (Conv1D weights are [in, out])
  size_t offset = 0;           // into the flat buffer
  size_t numel = 0;
  int unit = 0;
  bool weight_decay = false;  // true for 2-D weights (matmuls, embeddings); false for biases and LayerNorm
};

struct UnitRange {
  size_t offset = 0, numel = 0;
};

// Called around each use of a unit's parameters; stage 3 gathers in before_* and frees in after_*.
// The forward order is 0, 1..L, L+1, then 0 again for the tied LM head; backward runs it in reverse.
// Exactly, for one forward + backward (L = n_layer):
//   forward:  bf(0) af(0), bf(1) af(1), ..., bf(L) af(L), bf(L+1) af(L+1), bf(0) af(0)   [last pair: LM head]
//   backward: bb(0) [LM head, no after], bb(L+1) ab(L+1), bb(L) ab(L), ..., bb(1) ab(1), bb(0) ab(0) [embeddings]
// before_backward(0) thus comes twice and after_backward(0) once, at the very end: the tied wte gets gradient from
// both the LM head and the embedding, and only then is unit 0 complete. Unit 0's parameters must stay readable from
// the first before_backward(0) to after_backward(0) (a gather in before_backward must tolerate being repeated).
// With activation checkpointing, the recomputation of block l happens inside bb(l+1)..ab(l+1) (no extra hooks).
class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  virtual void before_forward(int unit) = 0;
  virtual void after_forward(int unit) = 0;
  virtual void before_backward(int unit) = 0;
  // The unit's gradients are complete (for this micro-batch) when this is called: a bucketer may reduce them.
  virtual void after_backward(int unit) = 0;
};

// Own: the model allocates its full-size fp32 parameters and gradients (8 bytes per parameter). None: a layout only
// (names, shapes, offsets, units), for the GPU path, whose weights live on the device; as after release_own_buffers.
enum class GPT2Buffers { Own, None };

// The values GPT2::init_weights(seed) gives parameter `index` (p = params()[index], n_layer from the dims), elements
// [begin, begin + n) only, into out[0, n): bit for bit the full call's, at a cost proportional to n.
void init_param_values(const ParamInfo& p, size_t index, int n_layer, uint64_t seed, size_t begin, size_t n,
                       float* out);

class GPT2 {
 public:
  GPT2(const ModelDims& dims, bool activation_checkpointing, GPT2Buffers buffers = GPT2Buffers::Own);
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const ModelDims& dims() const;
  const std::vector<ParamInfo>& params() const;
  size_t num_params() const;
  int num_units() const;
  UnitRange unit_range(int unit) const;

  // The model's own full-size buffers (allocated at construction). Stage 3 may instead point units elsewhere.
  float* param_data();
  const float* param_data() const;
  float* grad_data();
  // Points unit `unit` at params/grads buffers of unit_range(unit).numel floats (laid out as that unit's slice of
  // the flat buffer); nullptr restores the model's own slice. The model reads and writes parameters and gradients
  // only through these pointers.
  void set_unit_buffers(int unit, float* params, float* grads);
  // Frees the model's own full-size buffers (stage 3): from then on every unit is reached only through
  // set_unit_buffers, and param_data()/grad_data() return nullptr.
  void release_own_buffers();
  // Host bytes of the model's own parameter and gradient buffers (0 for a layout or after release_own_buffers).
  size_t buffer_bytes() const;
  void set_hooks(UnitHooks* hooks);  // nullptr = none

  // GPT-2 init: N(0, 0.02), residual projections (attn.c_proj, mlp.c_proj weights) scaled by 1/sqrt(2 n_layer),
  // zero biases, LayerNorm weight 1. Deterministic from seed: tensor i draws from its own splitmix64 stream seeded
  // from (seed, i), normals by Box-Muller in double; independent of the thread count. Writes through the current
  // unit buffers (the model's own flat buffer unless set_unit_buffers pointed a unit elsewhere).
  // See init_param_values for one tensor's values.
  void init_weights(uint64_t seed);

  // inputs, targets: B*T token ids (T <= block_size). Returns the mean cross-entropy over the B*T positions and
  // keeps what backward needs. targets == nullptr computes logits only (returns 0).
  float forward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // Accumulates (+=) d(loss * grad_scale)/d(params) into the grad buffers. grad_scale carries 1/accumulation
  // steps and the fp16 loss scale.
  void backward(float grad_scale = 1.0f);
  void zero_grad();  // zeroes every unit's current grad buffer

  const float* logits() const;  // B*T*vocab of the last forward
  // Bytes of activation memory held for the current (B, T) (forward activations kept for backward plus backward
  // scratch); with activation checkpointing only the block inputs and one block's worth are kept.
  size_t activation_bytes() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace zt
