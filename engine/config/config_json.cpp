// The resolved Config back to JSON (for --print-config and the metrics file's header).
#include "engine/config/config_parser.h"
#include "engine/config/train_device.h"

namespace zt {

const char* offload_device_name(OffloadDevice d) {
  switch (d) {
    case OffloadDevice::Cpu: return "cpu";
    case OffloadDevice::Nvme: return "nvme";
    default: return "none";
  }
}

const char* optimizer_type_name(OptimizerType t) {
  switch (t) {
    case OptimizerType::Adam: return "Adam";
    case OptimizerType::SGD: return "SGD";
    default: return "AdamW";
  }
}

const char* scheduler_type_name(SchedulerType t) {
  switch (t) {
    case SchedulerType::WarmupLR: return "WarmupLR";
    case SchedulerType::WarmupDecayLR: return "WarmupDecayLR";
    case SchedulerType::WarmupCosineLR: return "WarmupCosineLR";
    default: return "none";
  }
}

const char* comm_backend_name(CommBackend b) {
  switch (b) {
    case CommBackend::Nccl: return "nccl";
    case CommBackend::Gloo: return "gloo";
    default: return "auto";
  }
}

nlohmann::json config_to_json(const Config& cfg) {
  using json = nlohmann::json;
  json j = json::object();
  if (cfg.train_batch_size > 0) j["train_batch_size"] = cfg.train_batch_size;
  if (cfg.train_micro_batch_size_per_gpu > 0) j["train_micro_batch_size_per_gpu"] = cfg.train_micro_batch_size_per_gpu;
  if (cfg.gradient_accumulation_steps > 0) j["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps;
  j["steps_per_print"] = cfg.steps_per_print;
  j["wall_clock_breakdown"] = cfg.wall_clock_breakdown;
  j["gradient_clipping"] = cfg.gradient_clipping;
  if (cfg.world_size > 0) j["world_size"] = cfg.world_size;

  const OptimizerConfig& o = cfg.optimizer;
  json op = {{"lr", o.lr}, {"betas", {o.beta1, o.beta2}}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
  if (o.type == OptimizerType::Adam) op["adam_w_mode"] = o.adam_w_mode;
  if (o.type == OptimizerType::SGD) op = {{"lr", o.lr}, {"momentum", o.momentum}, {"weight_decay", o.weight_decay}};
  j["optimizer"] = {{"type", optimizer_type_name(o.type)}, {"params", op}};

  const SchedulerConfig& s = cfg.scheduler;
  if (s.type != SchedulerType::None) {
    json sp = {{"warmup_num_steps", s.warmup_num_steps},
               {"warmup_type", s.warmup_type == WarmupType::Log ? "log" : "linear"}};
    if (s.type == SchedulerType::WarmupCosineLR) {
      sp["warmup_min_ratio"] = s.warmup_min_ratio;
      sp["cos_min_ratio"] = s.cos_min_ratio;
    } else {
      sp["warmup_min_lr"] = s.warmup_min_lr;
      sp["warmup_max_lr"] = s.warmup_max_lr;
    }
    if (s.type != SchedulerType::WarmupLR) sp["total_num_steps"] = s.total_num_steps;
    j["scheduler"] = {{"type", scheduler_type_name(s.type)}, {"params", sp}};
  }

  const Fp16Config& f = cfg.fp16;
  j["fp16"] = {{"enabled", f.enabled},
               {"loss_scale", f.loss_scale},
               {"initial_scale_power", f.initial_scale_power},
               {"loss_scale_window", f.loss_scale_window},
               {"hysteresis", f.hysteresis},
               {"consecutive_hysteresis", f.consecutive_hysteresis},
               {"min_loss_scale", f.min_loss_scale}};
  j["bf16"] = {{"enabled", cfg.bf16}};

  const ZeroConfig& z = cfg.zero;
  json zj = {{"stage", z.stage},
             {"contiguous_gradients", z.contiguous_gradients},
             {"overlap_comm", z.overlap_comm},
             {"reduce_scatter", z.reduce_scatter},
             {"reduce_bucket_size", z.reduce_bucket_size},
             {"allgather_partitions", z.allgather_partitions},
             {"allgather_bucket_size", z.allgather_bucket_size},
             {"round_robin_gradients", z.round_robin_gradients},
             {"stage3_max_live_parameters", z.stage3_max_live_parameters},
             {"stage3_max_reuse_distance", z.stage3_max_reuse_distance},
             {"stage3_prefetch_bucket_size", z.stage3_prefetch_bucket_size},
             {"stage3_param_persistence_threshold", z.stage3_param_persistence_threshold},
             {"sub_group_size", z.sub_group_size},
             {"stage3_gather_16bit_weights_on_model_save", z.stage3_gather_16bit_weights_on_model_save}};
  const OffloadOptimizerConfig& oo = z.offload_optimizer;
  zj["offload_optimizer"] = {{"device", offload_device_name(oo.device)}, {"nvme_path", oo.nvme_path},
                             {"pin_memory", oo.pin_memory},            {"buffer_count", oo.buffer_count},
                             {"fast_init", oo.fast_init},              {"ratio", oo.ratio}};
  const OffloadParamConfig& opm = z.offload_param;
  zj["offload_param"] = {{"device", offload_device_name(opm.device)}, {"nvme_path", opm.nvme_path},
                         {"pin_memory", opm.pin_memory},            {"buffer_count", opm.buffer_count},
                         {"buffer_size", opm.buffer_size},          {"max_in_cpu", opm.max_in_cpu}};
  j["zero_optimization"] = zj;

  const AioConfig& a = cfg.aio;
  j["aio"] = {{"block_size", a.block_size},
              {"queue_depth", a.queue_depth},
              {"intra_op_parallelism", a.intra_op_parallelism},
              {"single_submit", a.single_submit},
              {"overlap_events", a.overlap_events}};
  const ActivationCheckpointingConfig& ac = cfg.activation_checkpointing;
  if (ac.enabled) {
    j["activation_checkpointing"] = {{"enabled", true},
                                     {"partition_activations", ac.partition_activations},
                                     {"cpu_checkpointing", ac.cpu_checkpointing},
                                     {"contiguous_memory_optimization", ac.contiguous_memory_optimization},
                                     {"number_checkpoints", ac.number_checkpoints},
                                     {"synchronize_checkpoint_boundary", ac.synchronize_checkpoint_boundary},
                                     {"profile", ac.profile}};
  }

  const ModelConfig& m = cfg.model;
  json mj = {{"n_layer", m.n_layer},
             {"n_head", m.n_head},
             {"n_embd", m.n_embd},
             {"vocab_size", m.vocab_size},
             {"block_size", m.block_size}};
  if (!m.preset.empty()) mj["preset"] = m.preset;
  if (!m.init_from.empty()) mj["init_from"] = m.init_from;
  j["model"] = mj;
  j["data"] = {{"train", cfg.data.train}, {"val", cfg.data.val}, {"seq_len", cfg.data.seq_len},
               {"shuffle", cfg.data.shuffle}};
  const TrainConfig& t = cfg.train;
  j["train"] = {{"device", train_device_name(t.device)}, {"attention", train_attention_name(t.attention)},
                {"max_steps", t.max_steps},         {"eval_interval", t.eval_interval}, {"eval_steps", t.eval_steps},
                {"seed", t.seed},                   {"save_dir", t.save_dir},           {"save_interval", t.save_interval},
                {"keep_last", t.keep_last},         {"resume", t.resume},               {"metrics_file", t.metrics_file}};
  j["comm"] = {{"backend", comm_backend_name(cfg.comm.backend)}, {"timeout_s", cfg.comm.timeout_s}};
  return j;
}

}  // namespace zt
