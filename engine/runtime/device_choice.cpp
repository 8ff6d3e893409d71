#include "engine/runtime/device_choice.h"

#include "engine/base/error.h"
#include "engine/config/train_device.h"

#ifdef ZT_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

namespace zt {

TrainDevice choose_train_device(const Config& cfg) {
  if (cfg.train.device == TrainDevice::Cpu) return TrainDevice::Cpu;  // no CUDA call at all on the default path
#ifdef ZT_HAVE_CUDA
  return resolve_train_device(cfg, cuda::visible_device_count(), true);
#else
  return resolve_train_device(cfg, 0, false);
#endif
}

void use_gpu_of_local_rank(int local_rank) {
#ifdef ZT_HAVE_CUDA
  const int gpus = cuda::visible_device_count();
  if (gpus <= 0) throw RuntimeError("local rank " + std::to_string(local_rank) + ": no GPU is visible");
  cuda::set_current_device(local_rank % gpus);
#else
  throw RuntimeError("local rank " + std::to_string(local_rank) + ": this zerotrain was built without CUDA");
#endif
}

}  // namespace zt
