#pragma once
// `zerotrain plan`: for every valid ZeRO stage x offload combination, the per-rank device, host and NVMe bytes a
// config would need (model states by the same code as --dry-run, plus activations and communication buffers),
// whether that fits the given machines, and the fastest combination that fits. docs/experiments.md documents the
// formulas and the ranking.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/config/memory_estimate.h"

namespace zt {

struct PlanOptions {
  std::string model_preset;  // --model: replaces the config's model dims ("" = the config's model)
  int64_t num_params = 0;    // --params: replaces the parameter count; activations keep the config's dims (0 = none)
  int nproc_per_node = 1;
  int nnodes = 1;
  int64_t device_memory = 0;  // per rank; 0 = detect (the GPU's, else host MemTotal)
  int64_t host_memory = 0;    // per node; 0 = /proc/meminfo MemTotal
  int64_t nvme_free = -1;     // per node; -1 = free space where the config's nvme_path (else ".") lives
};

struct PlanRow {
  int stage = 0;
  OffloadDevice optimizer_offload = OffloadDevice::None;
  OffloadDevice param_offload = OffloadDevice::None;
  ModelStateBytes states;  // per rank, = the --dry-run estimate for this stage/offload
  int64_t activations = 0;  // per rank, on device
  int64_t buffers = 0;      // per rank, on device: gradient/parameter communication buckets
  int64_t device = 0;       // states.device + activations + buffers
  int64_t host = 0;         // states.host (per rank)
  int64_t nvme = 0;         // states.nvme (per rank)
  int64_t comm_bytes = 0;   // bytes each rank sends per step (ring collectives)
  int offload_cost = 0;     // 0 none, 1 optimizer->cpu, 2 +param->cpu, 3 optimizer->nvme, 4 param->nvme
  bool fits_device = false, fits_host = false, fits_nvme = false;
  bool fits() const { return fits_device && fits_host && fits_nvme; }
};

struct Plan {
  std::string model_description;
  int64_t num_params = 0;
  int world_size = 1;
  int nproc_per_node = 1;
  Precision precision = Precision::Fp32;
  int64_t micro_batch = 1;
  int64_t seq_len = 0;
  bool checkpointing = false;
  int64_t device_memory = 0, host_memory = 0, nvme_free = 0;
  std::vector<std::string> notes;  // where defaults came from, what --params means
  std::vector<PlanRow> rows;       // stage 0..3, offloads in order none, cpu, nvme
  int recommended = -1;            // index into rows; -1 = nothing fits
};

// All valid combinations: offload_optimizer needs stage >= 1, offload_param needs stage 3.
std::vector<PlanRow> plan_combinations();

// The ranking key: fewer offload (PCIe/host) cost first, then fewer communication bytes, then the lower stage.
bool plan_row_faster(const PlanRow& a, const PlanRow& b);

// Bytes one rank sends per step: stages 0-2 move 2*Psi*bytes (allreduce = reduce-scatter + all-gather), stage 3
// 3*Psi*bytes (parameters gathered for forward and again for backward, gradients reduce-scattered); a ring moves
// (N-1)/N of that per rank, 0 with one rank.
int64_t plan_comm_bytes(int stage, int64_t num_params, Precision precision, int world_size);

// Communication buffers on the device: the gradient bucket (reduce_bucket_size), plus at stages 1-2 the
// parameter all-gather bucket, at stage 3 the live gathered parameters (stage3_max_live_parameters) and the
// prefetch bucket; each capped at Psi elements, 16-bit in mixed precision.
int64_t plan_buffer_bytes(const ZeroConfig& zero, int stage, int64_t num_params, Precision precision);

Plan make_plan(const Config& cfg, const PlanOptions& options);

// The aligned Markdown table and the final "recommended: stage X, offload Y" line.
std::string format_plan(const Plan& plan);

// "7e9", "1558M", "1.5B", "124000000": a parameter count (K, M, B/G, T are powers of 1000). Throws ConfigError.
int64_t parse_param_count(const std::string& text);

// Machine defaults: /proc/meminfo MemTotal; the first GPU's memory through nvidia-smi when /dev/nvidia0 exists
// (0 when unknown); free bytes of the filesystem holding path.
int64_t host_memory_total();
int64_t gpu_memory_total();
int64_t filesystem_free_bytes(const std::string& path);

}  // namespace zt
