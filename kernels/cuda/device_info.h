#pragma once
// What the CUDA runtime sees on this machine.

namespace zt::cuda {

// Number of visible GPUs; 0 when there is no device or no usable driver (never throws).
int visible_device_count();

}  // namespace zt::cuda
