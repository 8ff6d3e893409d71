#pragma once
// What the CUDA runtime sees on this machine.

namespace zt::cuda {

// Number of visible GPUs; 0 when there is no device or no usable driver (never throws).
int visible_device_count();

// Makes device `index` (0-based among the visible ones) current for this thread; throws RuntimeError on failure.
void set_current_device(int index);

}  // namespace zt::cuda
