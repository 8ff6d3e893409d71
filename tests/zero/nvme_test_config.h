#pragma once
// The config of an NVMe optimizer-offload test: swap files under dir, buffer_count buffer sets, sub-groups of
// sub_group elements (shared by the CPU tests in tests/zero and the GPU path's pipeline tests in tests/cuda).
#include <cstdint>
#include <string>

#include "engine/config/config.h"

namespace zt::test {

inline Config nvme_config(const std::string& dir, int buffer_count, int64_t sub_group) {
  Config cfg;
  cfg.zero.stage = 3;
  cfg.zero.sub_group_size = sub_group;
  cfg.zero.offload_optimizer.device = OffloadDevice::Nvme;
  cfg.zero.offload_optimizer.nvme_path = dir;
  cfg.zero.offload_optimizer.buffer_count = buffer_count;
  return cfg;
}

}  // namespace zt::test
