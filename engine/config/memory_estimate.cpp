#include "engine/config/memory_estimate.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::Bf16: return "bf16";
    case Precision::Fp16: return "fp16";
    default: return "fp32";
  }
}

Precision config_precision(const Config& cfg) {
  if (cfg.fp16.enabled) return Precision::Fp16;
  if (cfg.bf16) return Precision::Bf16;
  return Precision::Fp32;
}

int64_t gpt2_param_count(const ModelConfig& model) {
  const int64_t C = model.n_embd, V = model.vocab_size, T = model.block_size, L = model.n_layer;
  const int64_t per_layer = 2 * C                  // ln_1
                            + C * 3 * C + 3 * C     // attn.c_attn
                            + C * C + C             // attn.c_proj
                            + 2 * C                 // ln_2
                            + C * 4 * C + 4 * C     // mlp.c_fc
                            + 4 * C * C + C;        // mlp.c_proj
  return V * C + T * C + L * per_layer + 2 * C;
}

int64_t gpt2_largest_unit_numel(const ModelConfig& model) {
  const int64_t C = model.n_embd, V = model.vocab_size, T = model.block_size;
  const int64_t block = model.n_layer > 0 ? (gpt2_param_count(model) - V * C - T * C - 2 * C) / model.n_layer : 0;
  return std::max({V * C + T * C, block, 2 * C});
}

int64_t gpt2_largest_unit_shard(const ModelConfig& model, int world_size) {
  const int64_t align = 16 * static_cast<int64_t>(world_size);
  return (gpt2_largest_unit_numel(model) + align - 1) / align * align / world_size;
}

static void place(ModelStateBytes& b, int64_t bytes, OffloadDevice where) {
  if (where == OffloadDevice::Cpu)
    b.host += bytes;
  else if (where == OffloadDevice::Nvme)
    b.nvme += bytes;
  else
    b.device += bytes;
}

ModelStateBytes estimate_model_state_bytes(const MemoryEstimateInput& in) {
  if (in.num_params < 0 || in.world_size < 1 || in.stage < 0 || in.stage > 3)
    throw ConfigError("memory estimate: need num_params >= 0, world_size >= 1 and stage in [0, 3]");
  const int64_t psi = in.num_params;
  const int64_t shard = (psi + in.world_size - 1) / in.world_size;  // ceil(Ψ / N)
  const bool mixed = in.precision != Precision::Fp32;
  const int64_t param_bytes = mixed ? 2 : 4;
  const int64_t grad_bytes = mixed ? 2 : 4;
  // Mixed precision keeps an fp32 master copy in the optimizer term. fp32 training updates the params directly at
  // stage 0, and at stage 3 (whose parameter partition is the master); stages 1 and 2 partition the optimizer and
  // keep an fp32 copy of their partition, as DeepSpeed's partitioned optimizer does in every precision. Optimizer
  // offload to NVMe keeps the master in a swap file with m and v, apart from the working parameters, in every case.
  const bool master_copy =
      mixed || in.stage == 1 || in.stage == 2 || (in.stage == 3 && in.optimizer_offload == OffloadDevice::Nvme);
  const int64_t optim_bytes = 4 * in.optimizer_state_floats + (master_copy ? 4 : 0);

  ModelStateBytes b;
  b.params = param_bytes * (in.stage >= 3 ? shard : psi);
  b.grads = grad_bytes * (in.stage >= 2 ? shard : psi);
  b.optimizer_states = optim_bytes * (in.stage >= 1 ? shard : psi);
  b.total = b.params + b.grads + b.optimizer_states;
  place(b, b.params, in.param_offload);
  b.device += b.grads;
  place(b, b.optimizer_states, in.optimizer_offload);
  return b;
}

MemoryEstimateInput memory_estimate_input(const Config& cfg, int world_size) {
  MemoryEstimateInput in;
  in.num_params = gpt2_param_count(cfg.model);
  in.stage = cfg.zero.stage;
  in.world_size = world_size;
  in.precision = config_precision(cfg);
  in.optimizer_offload = cfg.zero.offload_optimizer.device;
  in.param_offload = cfg.zero.offload_param.device;
  if (cfg.optimizer.type == OptimizerType::SGD) in.optimizer_state_floats = cfg.optimizer.momentum > 0 ? 1 : 0;
  return in;
}

ActivationBytes estimate_activation_bytes(const ActivationEstimateInput& in) {
  if (in.micro_batch < 1 || in.seq_len < 1) throw ConfigError("activation estimate: need micro batch and seq_len >= 1");
  const int64_t B = in.micro_batch, T = in.seq_len, C = in.model.n_embd, L = in.model.n_layer;
  const int64_t a = in.model.n_head, V = in.model.vocab_size;
  const int64_t scale = in.precision == Precision::Fp32 ? 2 : 1;  // the paper's counts are for 16-bit
  const int64_t elem = in.precision == Precision::Fp32 ? 4 : 2;
  ActivationBytes b;
  b.per_layer = scale * (34 * B * T * C + 5 * a * B * T * T);
  b.layers = in.checkpointing ? B * T * C * L * elem + b.per_layer : L * b.per_layer;
  b.head = 2 * B * T * V * 4;
  b.total = b.layers + b.head;
  return b;
}

ActivationEstimateInput activation_estimate_input(const Config& cfg, int64_t micro_batch) {
  ActivationEstimateInput in;
  in.model = cfg.model;
  in.micro_batch = micro_batch;
  in.seq_len = cfg.data.seq_len;
  in.precision = config_precision(cfg);
  in.checkpointing = cfg.activation_checkpointing.enabled;
  return in;
}

int64_t parse_byte_size(const std::string& what, const std::string& text) {
  const char* s = text.c_str();
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  std::string unit;
  for (const char* p = end; *p; ++p)
    if (!std::isspace(static_cast<unsigned char>(*p))) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(*p)));
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  double mult = 0;
  if (unit.empty()) mult = 1;
  else if (unit == "ki" || unit == "k") mult = unit == "k" ? 1e3 : 1024.0;
  else if (unit == "mi") mult = 1024.0 * 1024;
  else if (unit == "m") mult = 1e6;
  else if (unit == "gi") mult = 1024.0 * 1024 * 1024;
  else if (unit == "g") mult = 1e9;
  else if (unit == "ti") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "t") mult = 1e12;
  if (end == s || mult == 0 || !std::isfinite(v) || v < 0 || v * mult > 9.0e18)
    throw ConfigError(what + ": expected a size like 80GiB, 16GB, 2TiB or a byte count, got '" + text + "'");
  return static_cast<int64_t>(std::llround(v * mult));
}

std::string human_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::string format_memory_estimate(const MemoryEstimateInput& in, const ModelStateBytes& b) {
  auto line = [](const char* name, int64_t bytes) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "  %-18s %16lld bytes  (%s)\n", name, static_cast<long long>(bytes),
                  human_bytes(bytes).c_str());
    return std::string(buf);
  };
  char head[256];
  std::snprintf(head, sizeof head,
                "memory estimate per rank (model states, ZeRO formulas): %lld parameters, ZeRO stage %d, "
                "world size %d, %s, offload optimizer=%s param=%s\n",
                static_cast<long long>(in.num_params), in.stage, in.world_size, precision_name(in.precision),
                offload_device_name(in.optimizer_offload), offload_device_name(in.param_offload));
  std::string s = head;
  s += line("parameters:", b.params);
  s += line("gradients:", b.grads);
  s += line("optimizer states:", b.optimizer_states);
  s += line("total:", b.total);
  s += line("on device:", b.device);
  s += line("on host:", b.host);
  s += line("on nvme:", b.nvme);
  return s;
}

}  // namespace zt
