#pragma once
// The typed, validated configuration. Parsed once, at start, from DeepSpeed's JSON schema plus zerotrain's own
// sections (model, data, train, comm, world_size). Nothing else in the engine reads raw JSON.
// Defaults are DeepSpeed's where the key is DeepSpeed's; docs/config.md documents every field.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zt {

enum class OptimizerType { Adam, AdamW, SGD };

struct OptimizerConfig {
  OptimizerType type = OptimizerType::AdamW;
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // DeepSpeed's "Adam" with adam_w_mode=true (its default) is AdamW; with false, L2 decay added to the gradient.
  bool adam_w_mode = true;
  double momentum = 0.0;  // SGD only
};

enum class SchedulerType { None, WarmupLR, WarmupDecayLR, WarmupCosineLR };
enum class WarmupType { Log, Linear };

struct SchedulerConfig {
  SchedulerType type = SchedulerType::None;
  // WarmupLR / WarmupDecayLR
  double warmup_min_lr = 0.0;
  double warmup_max_lr = 0.001;
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::Log;
  int64_t total_num_steps = 0;  // WarmupDecayLR, WarmupCosineLR (required there)
  // WarmupCosineLR (ratios of the optimizer's lr)
  double warmup_min_ratio = 0.0;
  double cos_min_ratio = 0.0001;
};

struct Fp16Config {
  bool enabled = false;
  double loss_scale = 0.0;  // 0 = dynamic
  int initial_scale_power = 16;
  int loss_scale_window = 1000;
  int hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
};

enum class OffloadDevice { None, Cpu, Nvme };

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::None;
  std::string nvme_path;
  bool pin_memory = false;
  int buffer_count = 4;
  bool fast_init = false;
  double ratio = 1.0;
};

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::None;
  std::string nvme_path;
  bool pin_memory = false;
  int buffer_count = 5;
  int64_t buffer_size = 100000000;
  int64_t max_in_cpu = 1000000000;
};

struct ZeroConfig {
  int stage = 0;
  bool contiguous_gradients = true;
  bool overlap_comm = false;  // DeepSpeed turns it on by default at stage 3 (the parser applies that)
  bool reduce_scatter = true;
  int64_t reduce_bucket_size = 500000000;
  bool allgather_partitions = true;
  int64_t allgather_bucket_size = 500000000;
  bool round_robin_gradients = false;
  int64_t stage3_max_live_parameters = 1000000000;
  int64_t stage3_max_reuse_distance = 1000000000;
  int64_t stage3_prefetch_bucket_size = 50000000;
  int64_t stage3_param_persistence_threshold = 100000;
  int64_t sub_group_size = 1000000000;
  bool stage3_gather_16bit_weights_on_model_save = false;
  OffloadOptimizerConfig offload_optimizer;
  OffloadParamConfig offload_param;
};

struct AioConfig {
  int64_t block_size = 1048576;
  int queue_depth = 8;
  int intra_op_parallelism = 1;  // older name: thread_count
  bool single_submit = false;
  bool overlap_events = true;
};

struct ActivationCheckpointingConfig {
  // DeepSpeed's section has no on/off switch (the model calls checkpoint()); zerotrain's model does it per block
  // whenever the section is present, unless zerotrain's own key "enabled" is false.
  bool enabled = false;
  bool partition_activations = false;
  bool cpu_checkpointing = false;
  bool contiguous_memory_optimization = false;
  int number_checkpoints = 0;
  bool synchronize_checkpoint_boundary = false;
  bool profile = false;
};

struct ModelConfig {
  std::string preset;  // gpt2-tiny, gpt2-124M, ... or empty when explicit
  int n_layer = 2;
  int n_head = 2;
  int n_embd = 64;
  int vocab_size = 256;
  int block_size = 64;
  std::string init_from;  // safetensors file or directory with model.safetensors.index.json; empty = random init
};

struct DataConfig {
  std::vector<std::string> train;  // shard paths or globs
  std::vector<std::string> val;
  int seq_len = 64;
  bool shuffle = true;
  bool embedded_default = false;  // true when the config had no data section: the embedded corpus is used
};

// Where training computes: the CPU, one GPU per rank, or the GPU when one is visible and the config is supported
// there (engine/config/train_device.h).
enum class TrainDevice { Cpu, Cuda, Auto };

// The GPU model's attention: flash (online softmax, keeps the log-sum-exp only), the reference kernel (keeps the
// [T,T] probabilities, as the CPU model), or flash where its kernel takes the head dim. The CPU has reference only.
enum class TrainAttention { Auto, Flash, Reference };

struct TrainConfig {
  TrainDevice device = TrainDevice::Cpu;
  TrainAttention attention = TrainAttention::Auto;
  int64_t max_steps = 100;
  int64_t eval_interval = 0;  // 0 = never
  int64_t eval_steps = 10;
  uint64_t seed = 1337;
  std::string save_dir = "out";
  int64_t save_interval = 0;  // 0 = only at the end
  int keep_last = 2;
  std::string resume;  // "", a tag path, or "latest"
  std::string metrics_file;  // default <save_dir>/metrics.jsonl
};

enum class CommBackend { Auto, Nccl, Gloo };

struct CommConfig {
  CommBackend backend = CommBackend::Auto;
  double timeout_s = 300.0;
};

// The batch triple after DeepSpeed's derivation for a known world size.
struct BatchConfig {
  int64_t train_batch_size = 0;
  int64_t micro_batch_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;
};

struct Config {
  // As written (0 = absent); resolve_batch() derives the missing ones for a world size.
  int64_t train_batch_size = 0;
  int64_t train_micro_batch_size_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;

  int steps_per_print = 10;
  bool wall_clock_breakdown = false;
  double gradient_clipping = 0.0;  // 0 = off

  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  Fp16Config fp16;
  bool bf16 = false;
  ZeroConfig zero;
  AioConfig aio;
  ActivationCheckpointingConfig activation_checkpointing;

  ModelConfig model;
  bool model_defaulted = false;  // no model section: the embedded default model
  DataConfig data;
  TrainConfig train;
  CommConfig comm;
  int world_size = 0;  // 0 = not given (launcher decides)

  std::vector<std::string> warnings;  // deprecations and accepted-but-not-implemented keys, logged at start
  std::vector<std::string> notes;     // informational lines (embedded defaults in use), logged at start
  std::string source_path;            // the file it came from
};

}  // namespace zt
