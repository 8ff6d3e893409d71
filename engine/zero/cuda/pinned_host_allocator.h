#pragma once
// The GPU path's host allocator for offload's buffer pools (swap I/O staging of ParamSwapper and
// NvmeOptimizerState): page-aligned memory registered with CUDA, so that the uploads and downloads from those
// buffers are truly asynchronous. Without it they are only mlocked, which CUDA does not know of: a copy from them is
// staged through the driver and the host blocks until the stream reaches it, losing the overlap with compute.
namespace zt::cuda {

// Registers the allocator (offload::set_host_allocator) for every pool made afterwards. Idempotent.
void use_pinned_host_buffers();

}  // namespace zt::cuda
