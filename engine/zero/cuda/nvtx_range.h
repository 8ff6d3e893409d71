#pragma once
// A named NVTX range for the lifetime of a scope, so Nsight Systems shows the training phases (forward, backward,
// reduce, optimizer) on the timeline. nvtx3 is header-only and costs nothing when no profiler is attached.
#include <nvtx3/nvToolsExt.h>

namespace zt::cuda {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace zt::cuda
