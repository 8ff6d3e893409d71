// From JSON text to a validated Config: one function per section, then the cross-field rules.
#include "engine/config/config_parser.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/base/error.h"
#include "engine/config/deepspeed_keys.h"
#include "engine/config/json_fields.h"
#include "engine/config/memory_estimate.h"
#include "engine/config/train_device.h"

namespace zt {

namespace {

using json = nlohmann::json;

constexpr int64_t kMax = INT64_MAX;

void parse_optimizer(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "optimizer", ctx);
  std::string type;
  OptimizerConfig& o = cfg.optimizer;
  if (r.get_choice("type", type, {"Adam", "AdamW", "SGD"}, /*case_insensitive=*/true))
    o.type = type == "Adam" ? OptimizerType::Adam : type == "AdamW" ? OptimizerType::AdamW : OptimizerType::SGD;
  else
    cfg.notes.push_back("optimizer.type not given: using AdamW");
  r.not_implemented("legacy_fusion");
  if (const json* params = r.get_raw("params")) {
    ObjectReader p(*params, "optimizer.params", ctx);
    p.get_double("lr", o.lr, 0.0, HUGE_VAL);
    const json* betas = p.get_raw("betas");
    if (betas && betas->is_string() && betas->get_ref<const std::string&>() == "auto") {
      ctx.warnings->push_back("optimizer.params.betas is \"auto\": zerotrain uses its default [0.9, 0.999]");
      betas = nullptr;
    }
    if (betas) {
      if (!betas->is_array() || betas->size() != 2 || !(*betas)[0].is_number() || !(*betas)[1].is_number())
        config_fail(ctx, "optimizer.params.betas: expected a list of two numbers in [0, 1), found " +
                             describe_value(*betas));
      double b1 = (*betas)[0].get<double>(), b2 = (*betas)[1].get<double>();
      if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1))
        config_fail(ctx, "optimizer.params.betas: expected a list of two numbers in [0, 1), found " +
                             describe_value(*betas));
      o.beta1 = b1;
      o.beta2 = b2;
    }
    p.get_double("eps", o.eps, 0.0, HUGE_VAL);
    p.get_double("weight_decay", o.weight_decay, 0.0, HUGE_VAL);
    bool adam_w_mode = true;
    if (p.get_bool("adam_w_mode", adam_w_mode)) {
      if (o.type == OptimizerType::Adam) o.adam_w_mode = adam_w_mode;
      if (o.type == OptimizerType::AdamW && !adam_w_mode)
        ctx.warnings->push_back("optimizer.params.adam_w_mode is false but optimizer.type is AdamW, which always "
                                "decays weights decoupled (as DeepSpeed does); adam_w_mode is ignored");
    }
    p.get_double("momentum", o.momentum, 0.0, 1.0);
    for (const char* key : {"torch_adam", "bias_correction", "amsgrad", "fused", "foreach", "capturable", "maximize",
                            "differentiable", "dampening", "nesterov", "set_grad_none", "fp32_optimizer_states"})
      p.not_implemented(key);
    p.finish();
  }
  r.finish();
}

void parse_scheduler(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "scheduler", ctx);
  std::string type;
  if (!r.get_choice("type", type, {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"}))
    config_fail(ctx, "scheduler.type: missing; expected one of \"WarmupLR\", \"WarmupDecayLR\", \"WarmupCosineLR\"");
  SchedulerConfig& s = cfg.scheduler;
  s.type = type == "WarmupLR"        ? SchedulerType::WarmupLR
           : type == "WarmupDecayLR" ? SchedulerType::WarmupDecayLR
                                     : SchedulerType::WarmupCosineLR;
  bool have_total = false;
  if (const json* params = r.get_raw("params")) {
    ObjectReader p(*params, "scheduler.params", ctx);
    if (s.type != SchedulerType::WarmupCosineLR) {
      p.get_double("warmup_min_lr", s.warmup_min_lr, 0.0, HUGE_VAL);
      if (!p.get_double("warmup_max_lr", s.warmup_max_lr, 0.0, HUGE_VAL, "optimizer.params.lr") &&
          p.has("warmup_max_lr"))
        s.warmup_max_lr = cfg.optimizer.lr;
    } else {
      p.get_double("warmup_min_ratio", s.warmup_min_ratio, 0.0, 1.0);
      p.get_double("cos_min_ratio", s.cos_min_ratio, 0.0, 1.0);
    }
    p.get_int("warmup_num_steps", s.warmup_num_steps, 0, kMax);
    std::string warmup_type;
    if (p.get_choice("warmup_type", warmup_type, {"log", "linear"}))
      s.warmup_type = warmup_type == "log" ? WarmupType::Log : WarmupType::Linear;
    if (s.type != SchedulerType::WarmupLR) {
      have_total = p.get_int("total_num_steps", s.total_num_steps, 1, kMax, "train.max_steps");
      if (!have_total && p.has("total_num_steps")) {  // "auto"
        s.total_num_steps = cfg.train.max_steps;
        have_total = true;
      }
    }
    p.not_implemented("last_batch_iteration");
    p.finish();
  }
  r.finish();
  if (s.type != SchedulerType::WarmupLR && !have_total)
    config_fail(ctx, "scheduler.params.total_num_steps: missing; " + type + " needs it (a positive integer)");
  if (s.type == SchedulerType::WarmupDecayLR && s.total_num_steps < s.warmup_num_steps)
    config_fail(ctx, "scheduler.params.total_num_steps: " + std::to_string(s.total_num_steps) +
                         " is less than warmup_num_steps " + std::to_string(s.warmup_num_steps));
}

void parse_fp16(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "fp16", ctx);
  Fp16Config& f = cfg.fp16;
  r.get_bool("enabled", f.enabled);
  r.get_double("loss_scale", f.loss_scale, 0.0, HUGE_VAL);
  r.get_int("initial_scale_power", f.initial_scale_power, 0, 64);
  r.get_int("loss_scale_window", f.loss_scale_window, 1, kMax);
  r.get_int("hysteresis", f.hysteresis, 1, kMax);
  r.get_bool("consecutive_hysteresis", f.consecutive_hysteresis);
  r.get_double("min_loss_scale", f.min_loss_scale, 0.0, HUGE_VAL);
  r.not_implemented("auto_cast");
  r.not_implemented("fp16_master_weights_and_grads");
  r.finish();
}

void parse_bf16(const json& j, const char* name, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, name, ctx);
  r.get_bool("enabled", cfg.bf16);
  r.not_implemented("immediate_grad_update");
  r.not_implemented("check_grad_overflow");
  r.finish();
}

OffloadDevice read_device(ObjectReader& r) {
  std::string device = "none";
  r.get_choice("device", device, {"none", "cpu", "nvme"});
  return device == "cpu" ? OffloadDevice::Cpu : device == "nvme" ? OffloadDevice::Nvme : OffloadDevice::None;
}

void parse_offload_optimizer(const json& j, OffloadOptimizerConfig& o, ParseContext& ctx) {
  if (j.is_null()) return;
  ObjectReader r(j, "zero_optimization.offload_optimizer", ctx);
  o.device = read_device(r);
  r.get_string("nvme_path", o.nvme_path);
  r.get_bool("pin_memory", o.pin_memory);
  // Two buffer sets at least: the next sub-group is read while the current one is updated.
  r.get_int("buffer_count", o.buffer_count, 2, kMax);
  r.get_bool("fast_init", o.fast_init);
  r.get_double("ratio", o.ratio, 0.0, 1.0);
  r.not_implemented("pipeline_read");
  r.not_implemented("pipeline_write");
  r.not_implemented("pipeline");
  r.finish();
}

void parse_offload_param(const json& j, OffloadParamConfig& o, ParseContext& ctx) {
  if (j.is_null()) return;
  ObjectReader r(j, "zero_optimization.offload_param", ctx);
  o.device = read_device(r);
  r.get_string("nvme_path", o.nvme_path);
  r.get_bool("pin_memory", o.pin_memory);
  r.get_int("buffer_count", o.buffer_count, 1, kMax);
  r.get_int("buffer_size", o.buffer_size, 1, kMax);
  r.get_int("max_in_cpu", o.max_in_cpu, 0, kMax);
  r.finish();
}

// DeepSpeed field names that are pydantic aliases of the stage3_* keys: both spellings are valid, not deprecated.
void get_int_either(ObjectReader& r, const char* name, const char* alias, int64_t& out) {
  r.get_int(name, out, 0, kMax);
  r.get_int(alias, out, 0, kMax);
}

void parse_zero(const json& j, Config& cfg, ParseContext& ctx) {
  ZeroConfig& z = cfg.zero;
  if (j.is_boolean()) {
    // DeepSpeed's oldest format: "zero_optimization": true means stage 1.
    ctx.warnings->push_back("zero_optimization given as a boolean is deprecated; use zero_optimization.stage");
    z.stage = j.get<bool>() ? 1 : 0;
    return;
  }
  ObjectReader r(j, "zero_optimization", ctx);
  r.get_int("stage", z.stage, 0, 3);
  r.get_bool("contiguous_gradients", z.contiguous_gradients);
  bool overlap_given = r.get_bool("overlap_comm", z.overlap_comm);
  if (!overlap_given) z.overlap_comm = z.stage == 3;  // DeepSpeed's stage-dependent default
  r.get_bool("reduce_scatter", z.reduce_scatter);
  r.get_int("reduce_bucket_size", z.reduce_bucket_size, 0, kMax);
  r.get_bool("allgather_partitions", z.allgather_partitions);
  r.get_int("allgather_bucket_size", z.allgather_bucket_size, 0, kMax);
  r.get_bool("round_robin_gradients", z.round_robin_gradients);
  get_int_either(r, "stage3_max_live_parameters", "max_live_parameters", z.stage3_max_live_parameters);
  get_int_either(r, "stage3_max_reuse_distance", "max_reuse_distance", z.stage3_max_reuse_distance);
  get_int_either(r, "stage3_prefetch_bucket_size", "prefetch_bucket_size", z.stage3_prefetch_bucket_size);
  get_int_either(r, "stage3_param_persistence_threshold", "param_persistence_threshold",
                 z.stage3_param_persistence_threshold);
  r.get_int("sub_group_size", z.sub_group_size, 0, kMax);
  if (const json* old = r.deprecated("stage3_gather_fp16_weights_on_model_save",
                                     "stage3_gather_16bit_weights_on_model_save")) {
    if (!old->is_boolean())
      config_fail(ctx, "zero_optimization.stage3_gather_fp16_weights_on_model_save: expected true or false, found " +
                           describe_value(*old));
    z.stage3_gather_16bit_weights_on_model_save = old->get<bool>();
  }
  r.get_bool("gather_16bit_weights_on_model_save", z.stage3_gather_16bit_weights_on_model_save);
  r.get_bool("stage3_gather_16bit_weights_on_model_save", z.stage3_gather_16bit_weights_on_model_save);

  // Deprecated boolean switches, mapped the way DeepSpeed maps them.
  if (const json* v = r.deprecated("cpu_offload", "offload_optimizer")) {
    if (!v->is_boolean() && !v->is_null())
      config_fail(ctx, "zero_optimization.cpu_offload: expected true or false, found " + describe_value(*v));
    if (v->is_boolean() && v->get<bool>()) z.offload_optimizer.device = OffloadDevice::Cpu;
  }
  if (const json* v = r.deprecated("cpu_offload_param", "offload_param")) {
    if (!v->is_boolean() && !v->is_null())
      config_fail(ctx, "zero_optimization.cpu_offload_param: expected true or false, found " + describe_value(*v));
    if (v->is_boolean() && v->get<bool>()) z.offload_param.device = OffloadDevice::Cpu;
  }
  if (const json* v = r.deprecated("cpu_offload_use_pin_memory", "offload_optimizer.pin_memory")) {
    if (!v->is_boolean() && !v->is_null())
      config_fail(ctx, "zero_optimization.cpu_offload_use_pin_memory: expected true or false, found " +
                           describe_value(*v));
    if (v->is_boolean()) z.offload_optimizer.pin_memory = z.offload_param.pin_memory = v->get<bool>();
  }
  if (const json* v = r.get_raw("offload_optimizer")) parse_offload_optimizer(*v, z.offload_optimizer, ctx);
  if (const json* v = r.get_raw("offload_param")) parse_offload_param(*v, z.offload_param, ctx);

  for (const char* key :
       {"load_from_fp32_weights", "elastic_checkpoint", "ignore_unused_parameters", "legacy_stage1",
        "memory_efficient_linear", "zero_hpz_partition_size", "zero_quantized_weights",
        "zero_quantized_nontrainable_weights", "zero_quantized_gradients", "zeropp_loco_param", "mics_shard_size",
        "mics_hierarchical_params_gather", "stage3_module_granularity_threshold", "module_granularity_threshold",
        "stage3_model_persistence_threshold", "model_persistence_threshold",
        "stage3_use_all_reduce_for_fetch_params", "use_all_reduce_for_fetch_params", "log_trace_cache_warnings",
        "use_multi_rank_bucket_allreduce", "pipeline_loading_checkpoint", "override_module_apply",
        "allgather_size", "cpu_offload_params"})
    r.not_implemented(key);
  r.finish();
}

void parse_aio(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "aio", ctx);
  AioConfig& a = cfg.aio;
  r.get_int("block_size", a.block_size, 1, kMax);
  r.get_int("queue_depth", a.queue_depth, 1, kMax);
  if (const json* v = r.deprecated("thread_count", "intra_op_parallelism")) {
    (void)v;
    r.get_int("thread_count", a.intra_op_parallelism, 1, kMax);
  }
  r.get_int("intra_op_parallelism", a.intra_op_parallelism, 1, kMax);
  r.get_bool("single_submit", a.single_submit);
  r.get_bool("overlap_events", a.overlap_events);
  r.not_implemented("use_gds");
  r.finish();
}

void parse_activation_checkpointing(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "activation_checkpointing", ctx);
  ActivationCheckpointingConfig& a = cfg.activation_checkpointing;
  a.enabled = true;  // present means on (zerotrain's own "enabled": false turns it off)
  r.get_bool("enabled", a.enabled);
  r.get_bool("partition_activations", a.partition_activations);
  r.get_bool("cpu_checkpointing", a.cpu_checkpointing);
  r.get_bool("contiguous_memory_optimization", a.contiguous_memory_optimization);
  // Real configs write null or false here for "not set".
  if (const json* v = r.get_raw("number_checkpoints")) {
    if (v->is_null() || (v->is_boolean() && !v->get<bool>()))
      a.number_checkpoints = 0;
    else
      r.get_int("number_checkpoints", a.number_checkpoints, 0, kMax);
  }
  r.get_bool("synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary);
  r.get_bool("profile", a.profile);
  for (const char* key : {"partition_activations", "cpu_checkpointing", "contiguous_memory_optimization",
                          "synchronize_checkpoint_boundary", "profile"})
    if (r.has(key))
      ctx.warnings->push_back(std::string("activation_checkpointing.") + key +
                              " is a DeepSpeed key that zerotrain accepts but does not implement yet; zerotrain "
                              "recomputes each block's activations in place");
  r.finish();
}

void parse_model(const json& j, Config& cfg, ParseContext& ctx) {
  ModelConfig& m = cfg.model;
  if (j.is_string()) {  // "model": "gpt2-124M" is short for {"preset": "gpt2-124M"}
    m.preset = j.get<std::string>();
    try {
      apply_model_preset(m);
    } catch (const ConfigError&) {
      config_fail(ctx, "model: unknown preset " + describe_value(j) + "; expected one of gpt2-tiny, gpt2-124M, "
                       "gpt2-350M, gpt2-774M, gpt2-1558M");
    }
    return;
  }
  ObjectReader r(j, "model", ctx);
  if (r.get_choice("preset", m.preset, model_preset_names())) apply_model_preset(m);
  r.get_int("n_layer", m.n_layer, 1, 1024);
  r.get_int("n_head", m.n_head, 1, 1024);
  r.get_int("n_embd", m.n_embd, 1, 1 << 16);
  r.get_int("vocab_size", m.vocab_size, 1, 65536);  // token shards hold uint16 ids
  r.get_int("block_size", m.block_size, 1, 1 << 20);
  r.get_string("init_from", m.init_from);
  r.finish();
  if (m.n_embd % m.n_head != 0)
    config_fail(ctx, "model.n_embd: " + std::to_string(m.n_embd) + " is not divisible by model.n_head " +
                         std::to_string(m.n_head));
}

void parse_data(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "data", ctx);
  DataConfig& d = cfg.data;
  r.get_string_list("train", d.train);
  r.get_string_list("val", d.val);
  r.get_int("seq_len", d.seq_len, 1, 1 << 20);
  r.get_bool("shuffle", d.shuffle);
  r.finish();
}

void parse_train(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "train", ctx);
  TrainConfig& t = cfg.train;
  std::string device;
  if (r.get_choice("device", device, {"cpu", "cuda", "auto"}))
    t.device = device == "cpu" ? TrainDevice::Cpu : device == "cuda" ? TrainDevice::Cuda : TrainDevice::Auto;
  std::string attention;
  if (r.get_choice("attention", attention, {"auto", "flash", "reference"}))
    t.attention = attention == "flash"       ? TrainAttention::Flash
                  : attention == "reference" ? TrainAttention::Reference
                                             : TrainAttention::Auto;
  r.get_int("max_steps", t.max_steps, 1, kMax);
  r.get_int("eval_interval", t.eval_interval, 0, kMax);
  r.get_int("eval_steps", t.eval_steps, 1, kMax);
  r.get_uint("seed", t.seed);
  r.get_string("save_dir", t.save_dir);
  r.get_int("save_interval", t.save_interval, 0, kMax);
  r.get_int("keep_last", t.keep_last, 0, kMax);
  r.get_string("resume", t.resume);
  r.get_string("metrics_file", t.metrics_file);
  r.finish();
}

void parse_comm(const json& j, Config& cfg, ParseContext& ctx) {
  ObjectReader r(j, "comm", ctx);
  std::string backend;
  if (r.get_choice("backend", backend, {"auto", "nccl", "gloo"}))
    cfg.comm.backend = backend == "auto" ? CommBackend::Auto : backend == "nccl" ? CommBackend::Nccl : CommBackend::Gloo;
  r.get_double("timeout_s", cfg.comm.timeout_s, 0.001, 1e7);
  r.finish();
}

void check_cross_fields(Config& cfg, ParseContext& ctx) {
  const ZeroConfig& z = cfg.zero;
  if (cfg.fp16.enabled && cfg.bf16)
    config_fail(ctx, "fp16.enabled and bf16.enabled are both true; enable at most one");
  if (z.offload_param.device != OffloadDevice::None && z.stage != 3)
    config_fail(ctx, std::string("zero_optimization.offload_param.device is \"") +
                         offload_device_name(z.offload_param.device) +
                         "\" but offloading parameters needs zero_optimization.stage 3 (found stage " +
                         std::to_string(z.stage) + ")");
  if (z.offload_optimizer.device != OffloadDevice::None && z.stage < 1)
    config_fail(ctx, std::string("zero_optimization.offload_optimizer.device is \"") +
                         offload_device_name(z.offload_optimizer.device) +
                         "\" but offloading the optimizer needs zero_optimization.stage >= 1 (found stage 0)");
  if (z.offload_optimizer.device == OffloadDevice::Nvme && z.offload_optimizer.nvme_path.empty())
    config_fail(ctx, "zero_optimization.offload_optimizer.nvme_path: missing; device \"nvme\" needs a path");
  if (z.offload_param.device == OffloadDevice::Nvme && z.offload_param.nvme_path.empty())
    config_fail(ctx, "zero_optimization.offload_param.nvme_path: missing; device \"nvme\" needs a path");
  if (z.offload_optimizer.ratio < 1.0 && z.stage != 3)
    config_fail(ctx, "zero_optimization.offload_optimizer.ratio: partial offloading (ratio < 1) needs "
                     "zero_optimization.stage 3 (found stage " + std::to_string(z.stage) + ")");
  if (z.offload_param.device == OffloadDevice::Nvme && cfg.world_size > 0) {
    try {
      check_offload_param_buffers(z.offload_param, gpt2_largest_unit_shard(cfg.model, cfg.world_size),
                                  cfg.world_size);
    } catch (const ConfigError& e) {
      config_fail(ctx, e.what());
    }
  }
  if (cfg.train.device == TrainDevice::Cpu && cfg.train.attention == TrainAttention::Flash)
    config_fail(ctx, "train.attention: \"flash\" is the GPU model's (train.device \"cuda\" or \"auto\"); the CPU "
                     "model has reference attention only");
  if (cfg.train.device == TrainDevice::Cuda) {
    const std::vector<std::string> unsupported = cuda_unsupported_settings(cfg);
    if (!unsupported.empty())
      config_fail(ctx, "train.device: \"cuda\" does not support (yet) " + join_settings(unsupported) +
                           "; use train.device \"cpu\" for this config");
  }
  if (cfg.data.seq_len > cfg.model.block_size)
    config_fail(ctx, "data.seq_len: " + std::to_string(cfg.data.seq_len) + " is larger than model.block_size " +
                         std::to_string(cfg.model.block_size));
  if (cfg.train_batch_size == 0 && cfg.train_micro_batch_size_per_gpu == 0)
    config_fail(ctx, "train_batch_size: either train_batch_size or train_micro_batch_size_per_gpu must be given");
  if (cfg.world_size > 0) {
    try {
      resolve_batch(cfg, cfg.world_size);
    } catch (const ConfigError& e) {
      config_fail(ctx, e.what());
    }
  }
}

}  // namespace

void check_offload_param_buffers(const OffloadParamConfig& o, int64_t largest_shard, int world_size) {
  const std::string why = " is smaller than the largest parameter partition of a rank (" +
                          std::to_string(largest_shard) + " elements of one layer unit at world size " +
                          std::to_string(world_size) + "), which is read whole";
  if (o.buffer_size < largest_shard)
    throw ConfigError("zero_optimization.offload_param.buffer_size: " + std::to_string(o.buffer_size) + why +
                      " into one buffer; raise it to at least " + std::to_string(largest_shard));
  if (o.max_in_cpu < largest_shard)
    throw ConfigError("zero_optimization.offload_param.max_in_cpu: " + std::to_string(o.max_in_cpu) + why +
                      " into memory; raise it to at least " + std::to_string(largest_shard));
}

static Config parse_document(const json& doc, ParseContext& ctx) {
  Config cfg;
  ObjectReader r(doc, "", ctx);
  r.get_int("train_batch_size", cfg.train_batch_size, 1, kMax, "the value derived from the other batch sizes");
  r.get_int("train_micro_batch_size_per_gpu", cfg.train_micro_batch_size_per_gpu, 1, kMax,
            "the value derived from the other batch sizes");
  r.get_int("gradient_accumulation_steps", cfg.gradient_accumulation_steps, 1, kMax,
            "the value derived from the other batch sizes");
  r.get_int("steps_per_print", cfg.steps_per_print, 1, kMax);
  r.get_bool("wall_clock_breakdown", cfg.wall_clock_breakdown);
  r.get_double("gradient_clipping", cfg.gradient_clipping, 0.0, HUGE_VAL);
  r.get_int("world_size", cfg.world_size, 1, 1 << 20);

  // zerotrain's own sections first: the optimizer's "auto" values and the scheduler's defaults refer to them.
  if (const json* v = r.get_raw("train")) parse_train(*v, cfg, ctx);
  if (const json* v = r.get_raw("model")) {
    parse_model(*v, cfg, ctx);
  } else {
    cfg.model.preset = "gpt2-tiny";
    apply_model_preset(cfg.model);
    cfg.model_defaulted = true;
    cfg.notes.push_back("no model section: using the embedded default model gpt2-tiny");
  }
  if (const json* v = r.get_raw("data")) parse_data(*v, cfg, ctx);
  if (cfg.data.train.empty()) {
    cfg.data.embedded_default = true;
    cfg.notes.push_back("no data.train: training on the embedded corpus (seq_len " +
                        std::to_string(cfg.data.seq_len) + ")");
  }
  if (const json* v = r.get_raw("comm")) parse_comm(*v, cfg, ctx);

  if (const json* v = r.get_raw("optimizer")) {
    if (!v->is_null()) parse_optimizer(*v, cfg, ctx);
  } else {
    cfg.notes.push_back("no optimizer section: using AdamW with lr 0.001");
  }
  if (const json* v = r.get_raw("scheduler")) {
    if (!v->is_null()) parse_scheduler(*v, cfg, ctx);
  }
  if (const json* v = r.get_raw("fp16")) parse_fp16(*v, cfg, ctx);
  if (const json* v = r.get_raw("bf16")) parse_bf16(*v, "bf16", cfg, ctx);
  if (const json* v = r.deprecated("bfloat16", "bf16")) parse_bf16(*v, "bfloat16", cfg, ctx);
  if (const json* v = r.get_raw("zero_optimization")) parse_zero(*v, cfg, ctx);
  if (const json* v = r.get_raw("aio")) parse_aio(*v, cfg, ctx);
  if (const json* v = r.get_raw("activation_checkpointing")) parse_activation_checkpointing(*v, cfg, ctx);

  for (const char* key : deepspeed_unimplemented_top_level_keys()) r.not_implemented(key);
  for (const char* key : deepspeed_ignored_sections()) {
    if (r.get_raw(key))
      ctx.warnings->push_back(std::string(key) + " is a DeepSpeed section that zerotrain ignores (accepted as is)");
  }
  r.finish();

  if (cfg.train.metrics_file.empty()) cfg.train.metrics_file = cfg.train.save_dir + "/metrics.jsonl";
  check_cross_fields(cfg, ctx);
  return cfg;
}

// nlohmann reports a byte offset; users want line and column.
static std::string line_column(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); i++) {
    if (text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

Config parse_config_text(const std::string& json_text, const std::string& source_name,
                         const std::vector<std::string>& overrides) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: <reason>"; keep the reason.
    std::string reason = e.what();
    size_t colon = reason.find(": ");
    if (colon != std::string::npos) reason = reason.substr(colon + 2);
    throw ConfigError(source_name + ": invalid JSON at " + line_column(json_text, e.byte) + ": " + reason);
  } catch (const json::exception& e) {
    // Number overflow (e.g. 1e999) is reported as out_of_range, without a position.
    std::string reason = e.what();
    size_t bracket = reason.find("] ");
    if (bracket != std::string::npos) reason = reason.substr(bracket + 2);
    throw ConfigError(source_name + ": invalid JSON: " + reason);
  }
  for (const auto& o : overrides) {
    try {
      apply_override(doc, o);
    } catch (const ConfigError& e) {
      throw ConfigError(source_name + ": " + e.what());
    }
  }
  Config cfg;
  std::vector<std::string> warnings;
  ParseContext ctx{source_name, &warnings};
  cfg = parse_document(doc, ctx);
  cfg.warnings = std::move(warnings);
  cfg.source_path = source_name;
  return cfg;
}

Config parse_config_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path + ": cannot read config file: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read config file");
  return parse_config_text(text.str(), path, overrides);
}

}  // namespace zt
