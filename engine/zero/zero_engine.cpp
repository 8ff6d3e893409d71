#include "engine/zero/zero_engine.h"

#include "engine/base/error.h"

namespace zt {

std::unique_ptr<ZeroEngine> make_data_parallel_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);
std::unique_ptr<ZeroEngine> make_partitioned_engine(const Config& cfg, GPT2& model, ProcessGroup& pg, int stage);
std::unique_ptr<ZeroEngine> make_stage3_engine(const Config& cfg, GPT2& model, ProcessGroup& pg);

std::unique_ptr<ZeroEngine> make_zero_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  switch (cfg.zero.stage) {
    case 0:
      return make_data_parallel_engine(cfg, model, pg);
    case 1:
    case 2:
      return make_partitioned_engine(cfg, model, pg, cfg.zero.stage);
    case 3:
      return make_stage3_engine(cfg, model, pg);
    default:
      throw RuntimeError("ZeRO stage " + std::to_string(cfg.zero.stage) + " does not exist (0-3)");
  }
}

}  // namespace zt
