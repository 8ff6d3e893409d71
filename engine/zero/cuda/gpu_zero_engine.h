#pragma once
// ZeRO stages 0-2 over the GPU model's device buffers. As in DeepSpeed, the model only computes; this engine reduces
// the gradients, computes the global norm, clips, runs Adam/AdamW on the device and publishes the updated
// parameters to the model. Stage 0 all-reduces the whole gradient and every rank updates everything; stages 1 and 2
// reduce-scatter each layer unit's gradient into the rank's partition (engine/zero/partition_map.h, the layout the
// CPU stages and the checkpoints use), update only that partition and allgather the parameters.
// Gradients are reduced in buckets during backward (stages 0-1: the last micro-batch's, stage 2: every micro-batch's,
// accumulated in an fp32 partition gradient); stage 2's model holds no full-size gradient (each unit's is written
// into a buffer of its own), but the engine keeps a full-size fp32 staging buffer for the collectives.
#include <memory>

#include "engine/comm/process_group.h"
#include "engine/model/gpt2.h"
#include "engine/model/initial_weights.h"
#include "engine/zero/zero_engine.h"

namespace zt::cuda {
class GPT2Cuda;
}

namespace zt {

// Stage 3 goes to make_gpu_stage3_engine (gpu_stage3_engine.h), whose GPU model has no full-size buffers.
// layout: a GPT2 of the same dims (its layout only; it may have no buffers). init: the initial weights, uploaded
// here chunk by chunk (for_each_initial_chunk). device_pg: collectives over device buffers (NCCL, or Gloo staged through pinned host memory); may be
// null in a world of one. host_pg: this job's group for host buffers (the norm's partial sums).
std::unique_ptr<ZeroEngine> make_gpu_zero_engine(const Config& cfg, const GPT2& layout, const InitialWeights& init,
                                                 std::shared_ptr<cuda::GPT2Cuda> model, ProcessGroup& host_pg,
                                                 ProcessGroup* device_pg);

}  // namespace zt
