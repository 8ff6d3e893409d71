#include "engine/config/train_device.h"

#include <sstream>

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
  // The GPU path offloads the optimizer (CPU Adam) to host memory or NVMe swap files at stages 1-3, in every
  // precision, always all of it; at stage 3 it offloads the parameters to host memory or NVMe, only together with
  // the optimizer.
  if (z.offload_optimizer.device != OffloadDevice::None && z.offload_optimizer.ratio < 1.0) {
    std::ostringstream ratio;
    ratio << z.offload_optimizer.ratio;
    out.push_back("zero_optimization.offload_optimizer.ratio (" + ratio.str() + ")");
  }
  if (z.offload_param.device != OffloadDevice::None && z.offload_optimizer.device == OffloadDevice::None)
    out.push_back(std::string("zero_optimization.offload_param.device (") +
                  offload_device_name(z.offload_param.device) + ") without zero_optimization.offload_optimizer");
  // Offload runs CPU Adam; SGD steps on the device only.
  if (cfg.optimizer.type == OptimizerType::SGD && z.offload_optimizer.device != OffloadDevice::None)
    out.push_back(std::string("optimizer.type (SGD) with zero_optimization.offload_optimizer.device (") +
                  offload_device_name(z.offload_optimizer.device) + ")");
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
