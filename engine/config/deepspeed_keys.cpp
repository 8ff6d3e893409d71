#include "engine/config/deepspeed_keys.h"

namespace zt {

const std::vector<const char*>& deepspeed_unimplemented_top_level_keys() {
  static const std::vector<const char*> keys = {
      "prescale_gradients",
      "gradient_predivide_factor",
      "sparse_gradients",
      "communication_data_type",
      "seq_parallel_communication_data_type",
      "dump_state",
      "memory_breakdown",
      "zero_allow_untested_optimizer",
      "zero_force_ds_cpu_optimizer",
      "graph_harvesting",
      "use_data_before_expert_parallelism",
      "disable_allgather",
      "fp32_allreduce",
      "dataloader_drop_last",
      "vocabulary_size",
      "gradient_accumulation_dtype",
      "sequence_parallel_size",
      "load_universal_checkpoint",
      "use_node_local_storage",
  };
  return keys;
}

const std::vector<const char*>& deepspeed_ignored_sections() {
  static const std::vector<const char*> sections = {
      "amp",
      "autotuning",
      "checkpoint",
      "comet",
      "comms_logger",
      "compile",
      "compression_training",
      "csv_monitor",
      "curriculum_learning",
      "data_efficiency",
      "data_types",
      "eigenvalue",
      "elasticity",
      "flops_profiler",
      "hybrid_engine",
      "monitor_config",
      "nebula",
      "pipeline",
      "progressive_layer_drop",
      "quantize_training",
      "sparse_attention",
      "tensor_parallel",
      "tensorboard",
      "timers",
      "torch_autocast",
      "wandb",
      "weight_quantization",
  };
  return sections;
}

}  // namespace zt
