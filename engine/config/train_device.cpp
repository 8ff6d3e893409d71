#include "engine/config/train_device.h"

#include "engine/base/error.h"
#include "engine/config/config_parser.h"

namespace zt {

const char* train_device_name(TrainDevice d) {
  switch (d) {
    case TrainDevice::Cpu:
      return "cpu";
    case TrainDevice::Cuda:
      return "cuda";
    case TrainDevice::Auto:
      return "auto";
  }
  return "?";
}

const char* train_attention_name(TrainAttention a) {
  switch (a) {
    case TrainAttention::Auto:
      return "auto";
    case TrainAttention::Flash:
      return "flash";
    case TrainAttention::Reference:
      return "reference";
  }
  return "?";
}

std::vector<std::string> cuda_unsupported_settings(const Config& cfg) {
  std::vector<std::string> out;
  const ZeroConfig& z = cfg.zero;
  // The GPU path offloads the optimizer to host memory (CPU Adam) in its stage 1-2 engine only, in every precision;
  // the stage-3 engine keeps its optimizer state on the device. Nothing goes to NVMe, and the parameters stay.
  if (z.offload_optimizer.device == OffloadDevice::Nvme)
    out.push_back("zero_optimization.offload_optimizer.device (nvme)");
  else if (z.offload_optimizer.device == OffloadDevice::Cpu && z.stage == 3)
    out.push_back("zero_optimization.offload_optimizer.device (cpu) at zero_optimization.stage 3");
  if (z.offload_param.device != OffloadDevice::None)
    out.push_back(std::string("zero_optimization.offload_param.device (") + offload_device_name(z.offload_param.device) +
                  ")");
  // Offload runs CPU Adam; SGD steps on the device only.
  if (cfg.optimizer.type == OptimizerType::SGD && z.offload_optimizer.device == OffloadDevice::Cpu)
    out.push_back("optimizer.type (SGD) with zero_optimization.offload_optimizer.device (cpu)");
  return out;
}

std::string join_settings(const std::vector<std::string>& settings) {
  std::string s;
  for (size_t i = 0; i < settings.size(); ++i) {
    if (i > 0) s += i + 1 == settings.size() ? " and " : ", ";
    s += settings[i];
  }
  return s;
}

TrainDevice resolve_train_device(const Config& cfg, int visible_gpus, bool built_with_cuda) {
  switch (cfg.train.device) {
    case TrainDevice::Cpu:
      return TrainDevice::Cpu;
    case TrainDevice::Cuda:
      if (!built_with_cuda)
        throw ConfigError("train.device: \"cuda\", but this zerotrain was built without CUDA (configure with "
                          "-DZT_CUDA=ON on a machine with nvcc), or use train.device \"cpu\"");
      if (visible_gpus <= 0)
        throw ConfigError("train.device: \"cuda\", but no GPU is visible to this process (no device, no driver, "
                          "or CUDA_VISIBLE_DEVICES hides them); use train.device \"cpu\" or \"auto\"");
      return TrainDevice::Cuda;
    case TrainDevice::Auto:
      return built_with_cuda && visible_gpus > 0 && cuda_unsupported_settings(cfg).empty() ? TrainDevice::Cuda
                                                                                            : TrainDevice::Cpu;
  }
  return TrainDevice::Cpu;
}

}  // namespace zt
