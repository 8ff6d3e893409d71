#include "engine/zero/zero_engine.h"

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/zero/mixed_precision.h"
#include "offload/cpu_adam.h"

namespace zt {

std::unique_ptr<ZeroEngine> make_data_parallel_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);
std::unique_ptr<ZeroEngine> make_partitioned_engine(const Config& cfg, GPT2& model, ProcessGroup& pg, int stage);
std::unique_ptr<ZeroEngine> make_stage3_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);

std::unique_ptr<ZeroEngine> make_zero_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  // What offloading does on this run, said once.
  if (pg.rank() == 0) {
    const auto& z = cfg.zero;
    if (z.offload_optimizer.device == OffloadDevice::Nvme)
      spdlog::info("offload_optimizer: the fp32 master weights and Adam state stream through swap files in {} in "
                   "sub-groups of {} elements, {} buffer sets; no fp32 master is kept in memory",
                   z.offload_optimizer.nvme_path, z.sub_group_size, z.offload_optimizer.buffer_count);
    if (z.offload_param.device == OffloadDevice::Nvme)
      spdlog::info("offload_param: each rank's parameter partition ({}) lives in a swap file in {}; stage 3 reads "
                   "unit shards ahead along the recorded trace through {} buffers, at most {} elements in memory, "
                   "and writes the updated partition back during each step (the fp32 master copy stays with the "
                   "optimizer, {})",
                   working_precision(cfg) == WorkingPrecision::F32 ? "fp32" : "16-bit", z.offload_param.nvme_path,
                   z.offload_param.buffer_count, z.offload_param.max_in_cpu,
                   z.offload_optimizer.device == OffloadDevice::Nvme ? "in its swap file" : "in host memory");
    if (z.offload_optimizer.device == OffloadDevice::Cpu)
      spdlog::info("offload_optimizer to cpu: the step runs in the vectorised CPU Adam ({})",
                   offload::cpu_isa_name(offload::cpu_adam_isa()));
    if (z.offload_param.device == OffloadDevice::Cpu)
      spdlog::info("offload_param to cpu: on a CPU run the partitions already live in host memory");
  }
  switch (cfg.zero.stage) {
    case 0:
      return make_data_parallel_engine(cfg, model, pg);
    case 1:
    case 2:
      return make_partitioned_engine(cfg, model, pg, cfg.zero.stage);
    case 3:
      return make_stage3_engine(cfg, model, pg);
    default:
      throw RuntimeError("ZeRO stage " + std::to_string(cfg.zero.stage) + " does not exist (0-3)");
  }
}

}  // namespace zt
