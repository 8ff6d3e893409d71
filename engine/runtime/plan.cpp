#include "engine/runtime/plan.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <tuple>

#include "engine/base/error.h"
#include "engine/config/config_parser.h"
#include "engine/runtime/markdown_table.h"

namespace zt {

std::vector<PlanRow> plan_combinations() {
  const OffloadDevice where[] = {OffloadDevice::None, OffloadDevice::Cpu, OffloadDevice::Nvme};
  std::vector<PlanRow> rows;
  for (int stage = 0; stage <= 3; ++stage)
    for (OffloadDevice opt : where) {
      if (stage == 0 && opt != OffloadDevice::None) continue;
      for (OffloadDevice param : where) {
        if (stage < 3 && param != OffloadDevice::None) continue;
        PlanRow r;
        r.stage = stage;
        r.optimizer_offload = opt;
        r.param_offload = param;
        // NVMe is slower than host memory, and parameters cross PCIe every forward and backward while the
        // optimizer crosses once per step: the classes order the cost of what is moved where.
        if (param == OffloadDevice::Nvme)
          r.offload_cost = 4;
        else if (opt == OffloadDevice::Nvme)
          r.offload_cost = 3;
        else if (param == OffloadDevice::Cpu)
          r.offload_cost = 2;
        else if (opt == OffloadDevice::Cpu)
          r.offload_cost = 1;
        rows.push_back(r);
      }
    }
  return rows;
}

bool plan_row_faster(const PlanRow& a, const PlanRow& b) {
  return std::tie(a.offload_cost, a.comm_bytes, a.stage) < std::tie(b.offload_cost, b.comm_bytes, b.stage);
}

int64_t plan_comm_bytes(int stage, int64_t num_params, Precision precision, int world_size) {
  if (world_size <= 1) return 0;
  const int64_t elem = precision == Precision::Fp32 ? 4 : 2;
  const int64_t volume = (stage >= 3 ? 3 : 2) * num_params * elem;
  return volume / world_size * (world_size - 1);
}

int64_t plan_buffer_bytes(const ZeroConfig& zero, int stage, int64_t num_params, Precision precision) {
  const int64_t elem = precision == Precision::Fp32 ? 4 : 2;
  auto capped = [&](int64_t n) { return std::min(n, num_params) * elem; };
  int64_t b = capped(zero.reduce_bucket_size);
  if (stage == 1 || stage == 2) b += capped(zero.allgather_bucket_size);
  if (stage == 3) b += capped(zero.stage3_max_live_parameters) + capped(zero.stage3_prefetch_bucket_size);
  return b;
}

int64_t parse_param_count(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  double mult = 0;
  if (unit.empty()) mult = 1;
  else if (unit == "K" || unit == "k") mult = 1e3;
  else if (unit == "M" || unit == "m") mult = 1e6;
  else if (unit == "B" || unit == "b" || unit == "G" || unit == "g") mult = 1e9;
  else if (unit == "T" || unit == "t") mult = 1e12;
  if (end == text.c_str() || mult == 0 || !(v * mult >= 1) || v * mult > 1e15)
    throw ConfigError("--params: expected a parameter count like 7e9, 1558M or 1.5B, got '" + text + "'");
  return static_cast<int64_t>(std::llround(v * mult));
}

int64_t host_memory_total() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemTotal:") return kib * 1024;
  return 0;
}

int64_t gpu_memory_total() {
  if (::access("/dev/nvidia0", F_OK) != 0) return 0;
  FILE* p = ::popen("nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null", "r");
  if (!p) return 0;
  long long mib = 0;
  const int n = std::fscanf(p, "%lld", &mib);
  ::pclose(p);
  return n == 1 && mib > 0 ? mib * 1024 * 1024 : 0;
}

int64_t filesystem_free_bytes(const std::string& path) {
  struct statvfs st{};
  if (::statvfs(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

Plan make_plan(const Config& config, const PlanOptions& o) {
  if (o.nproc_per_node < 1 || o.nnodes < 1) throw ConfigError("plan: --nproc_per_node and --nnodes must be >= 1");
  Config cfg = config;
  Plan plan;
  plan.nproc_per_node = o.nproc_per_node;
  plan.world_size = o.nproc_per_node * o.nnodes;
  if (!o.model_preset.empty()) {
    cfg.model.preset = o.model_preset;
    apply_model_preset(cfg.model);
  }
  plan.num_params = o.num_params > 0 ? o.num_params : gpt2_param_count(cfg.model);
  char model[256];
  std::snprintf(model, sizeof model, "%s (%d layers, %d heads, embd %d, vocab %d)",
                cfg.model.preset.empty() ? "config model" : cfg.model.preset.c_str(), cfg.model.n_layer,
                cfg.model.n_head, cfg.model.n_embd, cfg.model.vocab_size);
  plan.model_description = model;
  if (o.num_params > 0)
    plan.notes.push_back("--params " + std::to_string(o.num_params) + " sets the parameter count; the activation "
                         "estimate uses the config's model dims: " + plan.model_description);
  // Only the micro batch matters for memory: taken as written when given, so a config written for another world
  // size (its train_batch_size then disagreeing) can still be planned for this one.
  plan.micro_batch = cfg.train_micro_batch_size_per_gpu > 0 ? cfg.train_micro_batch_size_per_gpu
                                                            : resolve_batch(cfg, plan.world_size).micro_batch_per_gpu;
  plan.seq_len = cfg.data.seq_len;
  plan.precision = config_precision(cfg);
  plan.checkpointing = cfg.activation_checkpointing.enabled;

  plan.device_memory = o.device_memory;
  if (plan.device_memory <= 0) {
    plan.device_memory = gpu_memory_total();
    if (plan.device_memory > 0) {
      plan.notes.push_back("device memory: the first GPU's, from nvidia-smi (give --device-memory to override)");
    } else {
      plan.device_memory = host_memory_total() / o.nproc_per_node;
      plan.notes.push_back("device memory: no GPU visible, so host MemTotal / nproc_per_node (give --device-memory)");
    }
  }
  plan.host_memory = o.host_memory > 0 ? o.host_memory : host_memory_total();
  if (o.host_memory <= 0) plan.notes.push_back("host memory: /proc/meminfo MemTotal (give --host-memory)");
  if (o.nvme_free >= 0) {
    plan.nvme_free = o.nvme_free;
  } else {
    std::string path = cfg.zero.offload_optimizer.nvme_path;
    if (path.empty()) path = cfg.zero.offload_param.nvme_path;
    if (path.empty()) path = ".";
    plan.nvme_free = filesystem_free_bytes(path);
    plan.notes.push_back("nvme: free space of the filesystem holding '" + path + "' (give --nvme-free)");
  }

  MemoryEstimateInput in = memory_estimate_input(cfg, plan.world_size);
  in.num_params = plan.num_params;
  const ActivationBytes act = estimate_activation_bytes(activation_estimate_input(cfg, plan.micro_batch));
  plan.rows = plan_combinations();
  for (PlanRow& r : plan.rows) {
    in.stage = r.stage;
    in.optimizer_offload = r.optimizer_offload;
    in.param_offload = r.param_offload;
    r.states = estimate_model_state_bytes(in);
    r.activations = act.total;
    r.buffers = plan_buffer_bytes(cfg.zero, r.stage, plan.num_params, plan.precision);
    r.device = r.states.device + r.activations + r.buffers;
    r.host = r.states.host;
    r.nvme = r.states.nvme;
    r.comm_bytes = plan_comm_bytes(r.stage, plan.num_params, plan.precision, plan.world_size);
    // Host memory and the NVMe drive are shared by the ranks of one node.
    r.fits_device = r.device <= plan.device_memory;
    r.fits_host = r.host * o.nproc_per_node <= plan.host_memory;
    r.fits_nvme = r.nvme * o.nproc_per_node <= plan.nvme_free;
    if (r.fits() && (plan.recommended < 0 || plan_row_faster(r, plan.rows[static_cast<size_t>(plan.recommended)])))
      plan.recommended = static_cast<int>(&r - plan.rows.data());
  }
  return plan;
}

std::string format_plan(const Plan& p) {
  std::ostringstream s;
  s << "plan: " << p.model_description << ", " << p.num_params << " parameters, " << precision_name(p.precision)
    << ", " << p.world_size << " ranks (" << p.nproc_per_node << " per node), micro batch " << p.micro_batch
    << ", seq_len " << p.seq_len << ", activation checkpointing " << (p.checkpointing ? "on" : "off") << "\n";
  s << "limits: device " << human_bytes(p.device_memory) << " per rank, host " << human_bytes(p.host_memory)
    << " per node, nvme " << human_bytes(p.nvme_free) << " free per node\n";
  for (const auto& n : p.notes) s << "note: " << n << "\n";
  s << "\n";
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"stage", "offload opt", "offload param", "params", "grads", "optim", "activations", "buffers",
                   "device/rank", "host/rank", "nvme/rank", "comm/step/rank", "fits"});
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const PlanRow& r = p.rows[i];
    std::string fits;
    if (r.fits())
      fits = static_cast<int>(i) == p.recommended ? "yes <- recommended" : "yes";
    else {
      fits = "no (";
      std::string why;
      if (!r.fits_device) why += "device";
      if (!r.fits_host) why += std::string(why.empty() ? "" : ", ") + "host";
      if (!r.fits_nvme) why += std::string(why.empty() ? "" : ", ") + "nvme";
      fits += why + ")";
    }
    cells.push_back({std::to_string(r.stage), offload_device_name(r.optimizer_offload),
                     offload_device_name(r.param_offload), human_bytes(r.states.params), human_bytes(r.states.grads),
                     human_bytes(r.states.optimizer_states), human_bytes(r.activations), human_bytes(r.buffers),
                     human_bytes(r.device), human_bytes(r.host), human_bytes(r.nvme), human_bytes(r.comm_bytes),
                     fits});
  }
  s << markdown_table(cells) << "\n";
  if (p.recommended < 0) {
    s << "recommended: none fits (reduce the micro batch or seq_len, enable activation checkpointing, or add ranks)\n";
  } else {
    const PlanRow& r = p.rows[static_cast<size_t>(p.recommended)];
    std::string off = "none";
    if (r.optimizer_offload != OffloadDevice::None || r.param_offload != OffloadDevice::None) {
      off = std::string("optimizer=") + offload_device_name(r.optimizer_offload);
      if (r.stage == 3) off += std::string(" param=") + offload_device_name(r.param_offload);
    }
    s << "recommended: stage " << r.stage << ", offload " << off << "\n";
  }
  return s.str();
}

}  // namespace zt
