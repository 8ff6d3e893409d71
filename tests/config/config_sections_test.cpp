// Defaults and values of each config section.
#include <cmath>

#include "tests/config/config_test_util.h"

namespace zt {
namespace {

using test::has_warning;
using test::with_batch;

TEST(ConfigDefaults, DeepSpeedDefaultsWhenOnlyABatchSizeIsGiven) {
  Config cfg = parse_config_text(with_batch(""), "t.json");
  EXPECT_EQ(cfg.train_micro_batch_size_per_gpu, 2);
  EXPECT_EQ(cfg.train_batch_size, 0);
  EXPECT_EQ(cfg.steps_per_print, 10);
  EXPECT_FALSE(cfg.wall_clock_breakdown);
  EXPECT_EQ(cfg.gradient_clipping, 0.0);
  EXPECT_EQ(cfg.optimizer.type, OptimizerType::AdamW);
  EXPECT_EQ(cfg.scheduler.type, SchedulerType::None);
  EXPECT_FALSE(cfg.fp16.enabled);
  EXPECT_FALSE(cfg.bf16);
  EXPECT_EQ(cfg.zero.stage, 0);
  EXPECT_FALSE(cfg.zero.overlap_comm);
  EXPECT_EQ(cfg.zero.reduce_bucket_size, 500000000);
  EXPECT_EQ(cfg.zero.stage3_prefetch_bucket_size, 50000000);
  EXPECT_EQ(cfg.zero.offload_optimizer.device, OffloadDevice::None);
  EXPECT_FALSE(cfg.activation_checkpointing.enabled);
  EXPECT_EQ(cfg.world_size, 0);
  EXPECT_EQ(cfg.source_path, "t.json");
}

TEST(ConfigDefaults, NoModelOrDataSectionUsesEmbeddedDefaults) {
  Config cfg = parse_config_text(with_batch(""), "t.json");
  EXPECT_TRUE(cfg.model_defaulted);
  EXPECT_EQ(cfg.model.preset, "gpt2-tiny");
  EXPECT_EQ(cfg.model.n_layer, 2);
  EXPECT_EQ(cfg.model.n_head, 2);
  EXPECT_EQ(cfg.model.n_embd, 64);
  EXPECT_EQ(cfg.model.vocab_size, 256);
  EXPECT_EQ(cfg.model.block_size, 64);
  EXPECT_TRUE(cfg.data.embedded_default);
  EXPECT_EQ(cfg.data.seq_len, 64);
  ASSERT_EQ(cfg.notes.size(), 3u);
  EXPECT_NE(cfg.notes[0].find("embedded default model gpt2-tiny"), std::string::npos);
  EXPECT_NE(cfg.notes[1].find("embedded corpus"), std::string::npos);
  EXPECT_EQ(cfg.train.metrics_file, "out/metrics.jsonl");
}

TEST(ConfigTopLevel, ScalarsAreRead) {
  Config cfg = parse_config_text(
      with_batch("\"steps_per_print\": 5, \"wall_clock_breakdown\": true, \"gradient_clipping\": 1.0, "
                 "\"world_size\": 2"),
      "t.json");
  EXPECT_EQ(cfg.steps_per_print, 5);
  EXPECT_TRUE(cfg.wall_clock_breakdown);
  EXPECT_DOUBLE_EQ(cfg.gradient_clipping, 1.0);
  EXPECT_EQ(cfg.world_size, 2);
}

TEST(ConfigOptimizer, AdamWParams) {
  Config cfg = parse_config_text(with_batch(R"("optimizer": {"type": "AdamW", "params": {"lr": 3e-4,
      "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1}})"),
                                 "t.json");
  EXPECT_EQ(cfg.optimizer.type, OptimizerType::AdamW);
  EXPECT_DOUBLE_EQ(cfg.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(cfg.optimizer.beta1, 0.8);
  EXPECT_DOUBLE_EQ(cfg.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(cfg.optimizer.eps, 1e-6);
  EXPECT_DOUBLE_EQ(cfg.optimizer.weight_decay, 0.1);
  EXPECT_TRUE(cfg.optimizer.adam_w_mode);
}

TEST(ConfigOptimizer, AdamTypeIsCaseInsensitiveAndKeepsAdamWMode) {
  Config cfg =
      parse_config_text(with_batch(R"("optimizer": {"type": "adam", "params": {"adam_w_mode": false}})"), "t.json");
  EXPECT_EQ(cfg.optimizer.type, OptimizerType::Adam);
  EXPECT_FALSE(cfg.optimizer.adam_w_mode);
  Config dflt = parse_config_text(with_batch(R"("optimizer": {"type": "Adam", "params": {}})"), "t.json");
  EXPECT_TRUE(dflt.optimizer.adam_w_mode);  // DeepSpeed's default: Adam is AdamW
}

TEST(ConfigOptimizer, SgdMomentumAndUnimplementedParamWarns) {
  Config cfg = parse_config_text(
      with_batch(R"("optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}})"),
      "t.json");
  EXPECT_EQ(cfg.optimizer.type, OptimizerType::SGD);
  EXPECT_DOUBLE_EQ(cfg.optimizer.momentum, 0.9);
  EXPECT_TRUE(has_warning(cfg, "optimizer.params.nesterov is a DeepSpeed key that zerotrain accepts but does not "
                               "implement yet"));
}

TEST(ConfigScheduler, WarmupLR) {
  Config cfg = parse_config_text(with_batch(R"("scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0,
      "warmup_max_lr": 0.002, "warmup_num_steps": 50, "warmup_type": "linear"}})"),
                                 "t.json");
  EXPECT_EQ(cfg.scheduler.type, SchedulerType::WarmupLR);
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_max_lr, 0.002);
  EXPECT_EQ(cfg.scheduler.warmup_num_steps, 50);
  EXPECT_EQ(cfg.scheduler.warmup_type, WarmupType::Linear);
}

TEST(ConfigScheduler, WarmupLRDefaultsAreDeepSpeeds) {
  Config cfg = parse_config_text(with_batch(R"("scheduler": {"type": "WarmupLR"})"), "t.json");
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_min_lr, 0.0);
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_max_lr, 0.001);
  EXPECT_EQ(cfg.scheduler.warmup_num_steps, 1000);
  EXPECT_EQ(cfg.scheduler.warmup_type, WarmupType::Log);
}

TEST(ConfigScheduler, WarmupDecayLRNeedsTotalNumSteps) {
  Config cfg = parse_config_text(
      with_batch(R"("scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": 10, "total_num_steps": 100}})"),
      "t.json");
  EXPECT_EQ(cfg.scheduler.type, SchedulerType::WarmupDecayLR);
  EXPECT_EQ(cfg.scheduler.total_num_steps, 100);
  std::string msg = test::config_error(with_batch(R"("scheduler": {"type": "WarmupDecayLR", "params": {}})"));
  EXPECT_NE(msg.find("scheduler.params.total_num_steps: missing"), std::string::npos) << msg;
}

TEST(ConfigScheduler, WarmupCosineLR) {
  Config cfg = parse_config_text(with_batch(R"("scheduler": {"type": "WarmupCosineLR", "params": {
      "total_num_steps": 200, "warmup_min_ratio": 0.1, "cos_min_ratio": 0.01, "warmup_num_steps": 20}})"),
                                 "t.json");
  EXPECT_EQ(cfg.scheduler.type, SchedulerType::WarmupCosineLR);
  EXPECT_EQ(cfg.scheduler.total_num_steps, 200);
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_min_ratio, 0.1);
  EXPECT_DOUBLE_EQ(cfg.scheduler.cos_min_ratio, 0.01);
  // A WarmupLR-only key is not a WarmupCosineLR parameter.
  std::string msg = test::config_error(with_batch(
      R"("scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 10, "warmup_max_lr": 0.1}})"));
  EXPECT_NE(msg.find("unknown key 'scheduler.params.warmup_max_lr'"), std::string::npos) << msg;
}

TEST(ConfigPrecision, Fp16AndBf16) {
  Config cfg = parse_config_text(with_batch(R"("fp16": {"enabled": true, "loss_scale": 0, "initial_scale_power": 12,
      "loss_scale_window": 500, "hysteresis": 3, "consecutive_hysteresis": true, "min_loss_scale": 2})"),
                                 "t.json");
  EXPECT_TRUE(cfg.fp16.enabled);
  EXPECT_EQ(cfg.fp16.initial_scale_power, 12);
  EXPECT_EQ(cfg.fp16.loss_scale_window, 500);
  EXPECT_EQ(cfg.fp16.hysteresis, 3);
  EXPECT_TRUE(cfg.fp16.consecutive_hysteresis);
  EXPECT_DOUBLE_EQ(cfg.fp16.min_loss_scale, 2.0);
  Config defaults = parse_config_text(with_batch(R"("fp16": {"enabled": true})"), "t.json");
  EXPECT_EQ(defaults.fp16.initial_scale_power, 16);
  EXPECT_EQ(defaults.fp16.hysteresis, 2);
  Config bf = parse_config_text(with_batch(R"("bf16": {"enabled": true, "immediate_grad_update": false})"), "t.json");
  EXPECT_TRUE(bf.bf16);
  EXPECT_TRUE(has_warning(bf, "bf16.immediate_grad_update is a DeepSpeed key"));
  Config autocast = parse_config_text(with_batch(R"("fp16": {"enabled": false, "auto_cast": true})"), "t.json");
  EXPECT_TRUE(has_warning(autocast, "fp16.auto_cast is a DeepSpeed key that zerotrain accepts but does not implement"));
}

TEST(ConfigZero, AllKeysRead) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 3, "contiguous_gradients": false,
      "overlap_comm": false, "reduce_scatter": false, "reduce_bucket_size": 1000, "allgather_partitions": false,
      "allgather_bucket_size": 2000, "round_robin_gradients": true, "stage3_max_live_parameters": 3000,
      "stage3_max_reuse_distance": 4000, "stage3_prefetch_bucket_size": 5000,
      "stage3_param_persistence_threshold": 6000, "sub_group_size": 7000,
      "stage3_gather_16bit_weights_on_model_save": true,
      "offload_optimizer": {"device": "cpu", "pin_memory": true, "buffer_count": 3, "fast_init": true, "ratio": 0.5},
      "offload_param": {"device": "nvme", "nvme_path": "/tmp/x", "buffer_count": 6, "buffer_size": 123,
                        "max_in_cpu": 456}})"),
                                 "t.json");
  const ZeroConfig& z = cfg.zero;
  EXPECT_EQ(z.stage, 3);
  EXPECT_FALSE(z.contiguous_gradients);
  EXPECT_FALSE(z.overlap_comm);
  EXPECT_FALSE(z.reduce_scatter);
  EXPECT_EQ(z.reduce_bucket_size, 1000);
  EXPECT_FALSE(z.allgather_partitions);
  EXPECT_EQ(z.allgather_bucket_size, 2000);
  EXPECT_TRUE(z.round_robin_gradients);
  EXPECT_EQ(z.stage3_max_live_parameters, 3000);
  EXPECT_EQ(z.stage3_max_reuse_distance, 4000);
  EXPECT_EQ(z.stage3_prefetch_bucket_size, 5000);
  EXPECT_EQ(z.stage3_param_persistence_threshold, 6000);
  EXPECT_EQ(z.sub_group_size, 7000);
  EXPECT_TRUE(z.stage3_gather_16bit_weights_on_model_save);
  EXPECT_EQ(z.offload_optimizer.device, OffloadDevice::Cpu);
  EXPECT_TRUE(z.offload_optimizer.pin_memory);
  EXPECT_EQ(z.offload_optimizer.buffer_count, 3);
  EXPECT_TRUE(z.offload_optimizer.fast_init);
  EXPECT_DOUBLE_EQ(z.offload_optimizer.ratio, 0.5);
  EXPECT_EQ(z.offload_param.device, OffloadDevice::Nvme);
  EXPECT_EQ(z.offload_param.nvme_path, "/tmp/x");
  EXPECT_EQ(z.offload_param.buffer_count, 6);
  EXPECT_EQ(z.offload_param.buffer_size, 123);
  EXPECT_EQ(z.offload_param.max_in_cpu, 456);
}

TEST(ConfigZero, OverlapCommDefaultsOnAtStage3Only) {
  EXPECT_TRUE(parse_config_text(with_batch(R"("zero_optimization": {"stage": 3})"), "t").zero.overlap_comm);
  EXPECT_FALSE(parse_config_text(with_batch(R"("zero_optimization": {"stage": 2})"), "t").zero.overlap_comm);
}

TEST(ConfigZero, PydanticFieldNamesAreAcceptedForStage3Keys) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 3, "prefetch_bucket_size": 11,
      "max_live_parameters": 12, "gather_16bit_weights_on_model_save": true})"),
                                 "t");
  EXPECT_EQ(cfg.zero.stage3_prefetch_bucket_size, 11);
  EXPECT_EQ(cfg.zero.stage3_max_live_parameters, 12);
  EXPECT_TRUE(cfg.zero.stage3_gather_16bit_weights_on_model_save);
}

TEST(ConfigZero, UnimplementedKeysWarn) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 2, "ignore_unused_parameters": true,
      "legacy_stage1": false, "elastic_checkpoint": false, "zero_hpz_partition_size": 1,
      "zero_quantized_weights": false, "mics_shard_size": -1, "use_multi_rank_bucket_allreduce": true,
      "log_trace_cache_warnings": false, "stage3_module_granularity_threshold": 0})"),
                                 "t");
  for (const char* key : {"ignore_unused_parameters", "legacy_stage1", "elastic_checkpoint", "zero_hpz_partition_size",
                          "zero_quantized_weights", "mics_shard_size", "use_multi_rank_bucket_allreduce",
                          "log_trace_cache_warnings", "stage3_module_granularity_threshold"})
    EXPECT_TRUE(has_warning(cfg, std::string("zero_optimization.") + key +
                                     " is a DeepSpeed key that zerotrain accepts but does not implement yet"))
        << key;
}

TEST(ConfigZero, LegacyBooleanMeansStage1) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": true)"), "t");
  EXPECT_EQ(cfg.zero.stage, 1);
  EXPECT_TRUE(has_warning(cfg, "zero_optimization given as a boolean is deprecated"));
}

TEST(ConfigAio, KeysAndThreadCountAlias) {
  Config cfg = parse_config_text(with_batch(R"("aio": {"block_size": 262144, "queue_depth": 32,
      "thread_count": 4, "single_submit": true, "overlap_events": false})"),
                                 "t");
  EXPECT_EQ(cfg.aio.block_size, 262144);
  EXPECT_EQ(cfg.aio.queue_depth, 32);
  EXPECT_EQ(cfg.aio.intra_op_parallelism, 4);
  EXPECT_TRUE(cfg.aio.single_submit);
  EXPECT_FALSE(cfg.aio.overlap_events);
  EXPECT_TRUE(has_warning(cfg, "aio.thread_count is deprecated; use aio.intra_op_parallelism instead"));
  Config now = parse_config_text(with_batch(R"("aio": {"intra_op_parallelism": 2})"), "t");
  EXPECT_EQ(now.aio.intra_op_parallelism, 2);
  EXPECT_TRUE(now.warnings.empty());
}

TEST(ConfigActivationCheckpointing, PresentMeansEnabledUnlessDisabled) {
  Config on = parse_config_text(with_batch(R"("activation_checkpointing": {"partition_activations": false,
      "number_checkpoints": null, "profile": false})"),
                                "t");
  EXPECT_TRUE(on.activation_checkpointing.enabled);
  EXPECT_EQ(on.activation_checkpointing.number_checkpoints, 0);
  Config falsey = parse_config_text(with_batch(R"("activation_checkpointing": {"number_checkpoints": false})"), "t");
  EXPECT_TRUE(falsey.activation_checkpointing.enabled);
  Config off = parse_config_text(with_batch(R"("activation_checkpointing": {"enabled": false})"), "t");
  EXPECT_FALSE(off.activation_checkpointing.enabled);
  Config empty = parse_config_text(with_batch(R"("activation_checkpointing": {})"), "t");
  EXPECT_TRUE(empty.activation_checkpointing.enabled);
}

TEST(ConfigModel, PresetsHaveTheirDims) {
  struct Case {
    const char* name;
    int L, H, C, V, T;
  } cases[] = {{"gpt2-tiny", 2, 2, 64, 256, 64},
               {"gpt2-124M", 12, 12, 768, 50257, 1024},
               {"gpt2-350M", 24, 16, 1024, 50257, 1024},
               {"gpt2-774M", 36, 20, 1280, 50257, 1024},
               {"gpt2-1558M", 48, 25, 1600, 50257, 1024}};
  for (const auto& c : cases) {
    Config cfg = parse_config_text(with_batch(std::string("\"model\": {\"preset\": \"") + c.name + "\"}"), "t");
    EXPECT_FALSE(cfg.model_defaulted);
    EXPECT_EQ(cfg.model.preset, c.name);
    EXPECT_EQ(cfg.model.n_layer, c.L) << c.name;
    EXPECT_EQ(cfg.model.n_head, c.H) << c.name;
    EXPECT_EQ(cfg.model.n_embd, c.C) << c.name;
    EXPECT_EQ(cfg.model.vocab_size, c.V) << c.name;
    EXPECT_EQ(cfg.model.block_size, c.T) << c.name;
  }
}

TEST(ConfigModel, ExplicitFieldsOverrideThePreset) {
  Config cfg = parse_config_text(
      with_batch(R"("model": {"preset": "gpt2-124M", "n_layer": 4, "block_size": 256, "init_from": "/w/gpt2"})"), "t");
  EXPECT_EQ(cfg.model.n_layer, 4);
  EXPECT_EQ(cfg.model.n_head, 12);
  EXPECT_EQ(cfg.model.n_embd, 768);
  EXPECT_EQ(cfg.model.block_size, 256);
  EXPECT_EQ(cfg.model.init_from, "/w/gpt2");
  Config explicit_only = parse_config_text(
      with_batch(R"("model": {"n_layer": 3, "n_head": 4, "n_embd": 128, "vocab_size": 512, "block_size": 128})"), "t");
  EXPECT_TRUE(explicit_only.model.preset.empty());
  EXPECT_EQ(explicit_only.model.n_embd, 128);
  EXPECT_EQ(explicit_only.model.vocab_size, 512);
}

TEST(ConfigData, PathsGlobsAndSeqLen) {
  Config cfg = parse_config_text(
      with_batch(R"("data": {"train": "/d/train_*.bin", "val": ["/d/val_0.bin", "/d/val_1.bin"], "seq_len": 32,
                 "shuffle": false})"),
      "t");
  EXPECT_EQ(cfg.data.train, std::vector<std::string>{"/d/train_*.bin"});
  EXPECT_EQ(cfg.data.val, (std::vector<std::string>{"/d/val_0.bin", "/d/val_1.bin"}));
  EXPECT_EQ(cfg.data.seq_len, 32);
  EXPECT_FALSE(cfg.data.shuffle);
  EXPECT_FALSE(cfg.data.embedded_default);
}

TEST(ConfigTrainComm, Values) {
  Config cfg = parse_config_text(with_batch(R"("train": {"max_steps": 20, "eval_interval": 5, "eval_steps": 2,
      "seed": 42, "save_dir": "/tmp/run", "save_interval": 10, "keep_last": 3, "resume": "latest",
      "metrics_file": "/tmp/m.jsonl"}, "comm": {"backend": "gloo", "timeout_s": 60})"),
                                 "t");
  EXPECT_EQ(cfg.train.max_steps, 20);
  EXPECT_EQ(cfg.train.eval_interval, 5);
  EXPECT_EQ(cfg.train.eval_steps, 2);
  EXPECT_EQ(cfg.train.seed, 42u);
  EXPECT_EQ(cfg.train.save_dir, "/tmp/run");
  EXPECT_EQ(cfg.train.save_interval, 10);
  EXPECT_EQ(cfg.train.keep_last, 3);
  EXPECT_EQ(cfg.train.resume, "latest");
  EXPECT_EQ(cfg.train.metrics_file, "/tmp/m.jsonl");
  EXPECT_EQ(cfg.comm.backend, CommBackend::Gloo);
  EXPECT_DOUBLE_EQ(cfg.comm.timeout_s, 60.0);
  Config dflt = parse_config_text(with_batch(R"("train": {"save_dir": "/r"})"), "t");
  EXPECT_EQ(dflt.train.metrics_file, "/r/metrics.jsonl");
}

TEST(ConfigRoundTrip, ConfigToJsonParsesToTheSameConfig) {
  Config a = parse_config_text(with_batch(R"("gradient_accumulation_steps": 2, "world_size": 2,
      "optimizer": {"type": "Adam", "params": {"lr": 0.01, "adam_w_mode": false}},
      "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 100, "warmup_num_steps": 10}},
      "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}},
      "activation_checkpointing": {}, "model": {"preset": "gpt2-124M", "n_layer": 2},
      "data": {"train": "/x/*.bin", "seq_len": 128}, "train": {"max_steps": 7}, "comm": {"backend": "nccl"})"),
                               "t");
  Config b = parse_config_text(config_to_json(a).dump(), "t");
  EXPECT_EQ(config_to_json(a), config_to_json(b));
  EXPECT_EQ(b.optimizer.type, OptimizerType::Adam);
  EXPECT_FALSE(b.optimizer.adam_w_mode);
  EXPECT_EQ(b.zero.offload_optimizer.device, OffloadDevice::Cpu);
  EXPECT_TRUE(b.activation_checkpointing.enabled);
  EXPECT_EQ(b.model.n_layer, 2);
  EXPECT_EQ(b.data.seq_len, 128);
}

}  // namespace
}  // namespace zt
