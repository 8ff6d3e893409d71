#pragma once
// Per-rank bytes of model states (parameters, gradients, optimizer states) by ZeRO's formulas (Rajbhandari et al.,
// "ZeRO", section 3): with Ψ parameters and N ranks, mixed precision keeps 2Ψ params + 2Ψ grads + KΨ optimizer
// state (K = 12: fp32 master copy, m, v); fp32 training keeps 4Ψ + 4Ψ + 8Ψ (m, v). Stage 1 partitions the optimizer
// term over N, stage 2 also the gradients, stage 3 also the parameters. Activations are not included.
#include <cstdint>
#include <string>

#include "engine/config/config.h"

namespace zt {

enum class Precision { Fp32, Bf16, Fp16 };

const char* precision_name(Precision p);
Precision config_precision(const Config& cfg);  // fp16.enabled -> Fp16, bf16 -> Bf16, else Fp32

struct MemoryEstimateInput {
  int64_t num_params = 0;  // Ψ
  int stage = 0;           // 0..3
  int world_size = 1;      // N
  Precision precision = Precision::Fp32;
  OffloadDevice optimizer_offload = OffloadDevice::None;  // moves the optimizer term off the device
  OffloadDevice param_offload = OffloadDevice::None;      // moves the parameter term off the device (stage 3)
  int optimizer_state_floats = 2;  // fp32 values per parameter besides the master copy: Adam 2, SGD 1 or 0
};

// Per rank. A partitioned term holds ceil(Ψ / N) elements, as an even partition padded to N pieces does.
struct ModelStateBytes {
  int64_t params = 0;
  int64_t grads = 0;
  int64_t optimizer_states = 0;
  int64_t total = 0;  // params + grads + optimizer_states
  // Where those bytes live.
  int64_t device = 0;
  int64_t host = 0;
  int64_t nvme = 0;
};

ModelStateBytes estimate_model_state_bytes(const MemoryEstimateInput& in);

// The input for a parsed config: its model's parameter count, stage, precision, offload and optimizer.
MemoryEstimateInput memory_estimate_input(const Config& cfg, int world_size);

// Exact parameter count of GPT-2 with the given dims (tied LM head):
// wte V*C + wpe T*C + L * (ln_1 2C + c_attn C*3C+3C + attn.c_proj C*C+C + ln_2 2C + c_fc C*4C+4C + mlp.c_proj 4C*C+C)
// + ln_f 2C.
int64_t gpt2_param_count(const ModelConfig& model);
// Elements of GPT-2's largest layer unit (the embeddings V*C + T*C, a block, or the final LayerNorm), and of the
// largest unit shard at world_size ranks (padded to world_size * 16 elements, as PartitionMap does).
int64_t gpt2_largest_unit_numel(const ModelConfig& model);
int64_t gpt2_largest_unit_shard(const ModelConfig& model, int world_size);

// Activation memory per rank for one micro-batch, from the model shape (Korthikanti et al., "Reducing Activation
// Recomputation in Large Transformer Models", section 4.1): one transformer layer stores about
//   B*T*C*(34 + 5*n_head*T/C) bytes
// with 16-bit activations (their count includes the 1-byte dropout masks; we keep it as the conservative bound).
// fp32 training doubles it. With activation checkpointing only each block's input is kept, B*T*C*L*bytes, plus
// one layer's full activations during its recomputation. The head adds the logits and their gradient, 2*B*T*V
// values (fp32 in every precision, as the loss is computed in fp32 here).
struct ActivationEstimateInput {
  ModelConfig model;
  int64_t micro_batch = 1;  // B
  int64_t seq_len = 64;     // T
  Precision precision = Precision::Fp32;
  bool checkpointing = false;
};

struct ActivationBytes {
  int64_t per_layer = 0;  // one layer's full activations
  int64_t layers = 0;     // what the L layers keep between forward and backward
  int64_t head = 0;       // logits and their gradient
  int64_t total = 0;      // layers + head
};

ActivationBytes estimate_activation_bytes(const ActivationEstimateInput& in);
ActivationEstimateInput activation_estimate_input(const Config& cfg, int64_t micro_batch);

// Parses "80GiB", "16 GB", "2TiB", "512MiB", "1e9" (bytes); binary (KiB..TiB) and decimal (KB..TB) units, case-
// insensitive, optional B. Throws ConfigError naming what (e.g. "--device-memory").
int64_t parse_byte_size(const std::string& what, const std::string& text);

// "1.50 GiB" style.
std::string human_bytes(int64_t bytes);

// The multi-line report printed by `zerotrain --dry-run`.
std::string format_memory_estimate(const MemoryEstimateInput& in, const ModelStateBytes& bytes);

}  // namespace zt
