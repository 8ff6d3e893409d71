#pragma once
// ZeRO stage 3 on the GPU, as DeepSpeed's ZeRO-3 and FSDP: each rank keeps only its partition on the device (the fp32
// master, Adam's state, the fp32 gradient partition and, in bf16/fp16, the 16-bit working copy it gathers from).
// The GPU model is built without full-size buffers and reaches every unit through its hooks: before a unit's forward
// or backward its full parameters are all-gathered into a buffer from the model's caching allocator (prefetched
// along the first step's fetch order, UnitGatherPlanner's rules), after its backward the unit's gradient is
// reduce-scattered into the gradient partition and its buffers go back. At the boundary the partition is checked,
// clipped and updated as at stages 1-2 (finish_gradients, the Adam kernel), then cast to the working copy.
#include <memory>

#include "engine/comm/process_group.h"
#include "engine/model/gpt2.h"
#include "engine/model/initial_weights.h"
#include "engine/zero/zero_engine.h"

namespace zt::cuda {
class GPT2Cuda;
}

namespace zt {

// model: built with own_buffers = false. Other arguments as make_gpu_zero_engine's.
std::unique_ptr<ZeroEngine> make_gpu_stage3_engine(const Config& cfg, const GPT2& layout,
                                                   const InitialWeights& init,
                                                   std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                   ProcessGroup* device_pg);

}  // namespace zt
