// DeepSpeed's deprecated spellings, sections zerotrain ignores, 5e8-style numbers, "auto" and overrides.
#include "tests/config/config_test_util.h"

namespace zt {
namespace {

using test::config_error;
using test::has_warning;
using test::with_batch;

TEST(ConfigAliases, DeprecatedZeroKeysMapWithAWarningNamingTheNewKey) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 3, "cpu_offload": true,
      "cpu_offload_param": true, "cpu_offload_use_pin_memory": true,
      "stage3_gather_fp16_weights_on_model_save": true})"),
                                 "t");
  EXPECT_EQ(cfg.zero.offload_optimizer.device, OffloadDevice::Cpu);
  EXPECT_EQ(cfg.zero.offload_param.device, OffloadDevice::Cpu);
  EXPECT_TRUE(cfg.zero.offload_optimizer.pin_memory);
  EXPECT_TRUE(cfg.zero.stage3_gather_16bit_weights_on_model_save);
  EXPECT_TRUE(has_warning(cfg, "zero_optimization.cpu_offload is deprecated; use zero_optimization.offload_optimizer"));
  EXPECT_TRUE(
      has_warning(cfg, "zero_optimization.cpu_offload_param is deprecated; use zero_optimization.offload_param"));
  EXPECT_TRUE(has_warning(cfg, "zero_optimization.stage3_gather_fp16_weights_on_model_save is deprecated; use "
                               "zero_optimization.stage3_gather_16bit_weights_on_model_save"));
}

TEST(ConfigAliases, Bfloat16IsTheOldNameOfBf16) {
  Config cfg = parse_config_text(with_batch(R"("bfloat16": {"enabled": true})"), "t");
  EXPECT_TRUE(cfg.bf16);
  EXPECT_TRUE(has_warning(cfg, "bfloat16 is deprecated; use bf16 instead"));
}

TEST(ConfigAliases, IgnoredSectionsAcceptAnyContentWithOneWarning) {
  Config cfg = parse_config_text(with_batch(R"("tensorboard": {"enabled": true, "output_path": "/x"},
      "flops_profiler": {"enabled": false, "anything": [1, {"nested": true}]}, "wandb": {"enabled": false},
      "csv_monitor": {}, "comms_logger": {"enabled": true}, "checkpoint": {"tag_validation": "Warn"},
      "data_types": {"grad_accum_dtype": "fp32"}, "autotuning": {"enabled": false}, "elasticity": {},
      "compression_training": {}, "curriculum_learning": {}, "data_efficiency": {}, "nebula": {},
      "weight_quantization": {}, "hybrid_engine": {}, "eigenvalue": {}, "progressive_layer_drop": {},
      "sparse_attention": {"mode": "fixed"}, "quantize_training": {}, "timers": {}, "amp": {"enabled": false},
      "torch_autocast": {"enabled": false})"),
                                 "t");
  EXPECT_TRUE(has_warning(cfg, "tensorboard is a DeepSpeed section that zerotrain ignores"));
  EXPECT_TRUE(has_warning(cfg, "flops_profiler is a DeepSpeed section that zerotrain ignores"));
  EXPECT_TRUE(has_warning(cfg, "torch_autocast is a DeepSpeed section that zerotrain ignores"));
  EXPECT_EQ(cfg.warnings.size(), 22u);
}

TEST(ConfigAliases, UnimplementedTopLevelKeysWarn) {
  Config cfg = parse_config_text(with_batch(R"("prescale_gradients": false, "gradient_predivide_factor": 1.0,
      "sparse_gradients": false, "communication_data_type": "fp32", "seq_parallel_communication_data_type": "fp32",
      "dump_state": false, "memory_breakdown": false, "zero_allow_untested_optimizer": true,
      "zero_force_ds_cpu_optimizer": false, "graph_harvesting": false, "use_data_before_expert_parallelism": false,
      "disable_allgather": false, "fp32_allreduce": false)"),
                                 "t");
  EXPECT_EQ(cfg.warnings.size(), 13u);
  EXPECT_TRUE(has_warning(cfg, "prescale_gradients is a DeepSpeed key that zerotrain accepts but does not implement "
                               "yet; it is ignored"));
}

TEST(ConfigNumbers, ExponentNotationForIntegers) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 2, "reduce_bucket_size": 5e8,
      "allgather_bucket_size": 2e8, "sub_group_size": 1e9}, "train_batch_size": 4e0)"),
                                 "t");
  EXPECT_EQ(cfg.zero.reduce_bucket_size, 500000000);
  EXPECT_EQ(cfg.zero.allgather_bucket_size, 200000000);
  EXPECT_EQ(cfg.zero.sub_group_size, 1000000000);
  EXPECT_EQ(cfg.train_batch_size, 4);
}

TEST(ConfigNumbers, AutoUsesZerotrainsValueAndSaysSo) {
  Config cfg = parse_config_text(R"({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": 4,
      "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
      "optimizer": {"type": "AdamW", "params": {"lr": 0.005, "weight_decay": "auto"}},
      "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_max_lr": "auto", "warmup_num_steps": 5,
                    "total_num_steps": "auto"}},
      "fp16": {"enabled": "auto"}, "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"},
      "train": {"max_steps": 30}})",
                                 "t");
  EXPECT_EQ(cfg.train_batch_size, 0);
  EXPECT_EQ(cfg.gradient_accumulation_steps, 0);
  EXPECT_EQ(cfg.gradient_clipping, 0.0);
  EXPECT_EQ(cfg.optimizer.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_max_lr, 0.005);
  EXPECT_EQ(cfg.scheduler.total_num_steps, 30);
  EXPECT_FALSE(cfg.fp16.enabled);
  EXPECT_EQ(cfg.zero.reduce_bucket_size, 500000000);
  EXPECT_TRUE(has_warning(cfg, "train_batch_size is \"auto\": zerotrain uses the value derived from the other batch"));
  EXPECT_TRUE(has_warning(cfg, "scheduler.params.warmup_max_lr is \"auto\": zerotrain uses optimizer.params.lr"));
  EXPECT_TRUE(has_warning(cfg, "scheduler.params.total_num_steps is \"auto\": zerotrain uses train.max_steps"));
  EXPECT_TRUE(has_warning(cfg, "zero_optimization.reduce_bucket_size is \"auto\": zerotrain uses its default "
                               "500000000"));
  EXPECT_TRUE(has_warning(cfg, "fp16.enabled is \"auto\": zerotrain uses its default false"));
  EXPECT_EQ(resolve_batch(cfg, 2).train_batch_size, 8);
}

// A Hugging Face Trainer style DeepSpeed config: "auto" almost everywhere, monitors, deprecated keys.
TEST(ConfigRealWorld, HuggingFaceStyleZero3ConfigIsAccepted) {
  Config cfg = parse_config_text(R"({
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                             "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                "warmup_num_steps": "auto"}},
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": true},
        "offload_param": {"device": "cpu", "pin_memory": true}, "overlap_comm": true,
        "contiguous_gradients": true, "sub_group_size": 1e9, "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9,
        "stage3_gather_16bit_weights_on_model_save": true},
    "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 2000,
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": 4, "wall_clock_breakdown": false,
    "tensorboard": {"enabled": true, "output_path": "logs/", "job_name": "x"},
    "flops_profiler": {"enabled": false, "profile_step": 1, "module_depth": -1, "top_modules": 1,
                       "detailed": true},
    "comms_logger": {"enabled": false, "verbose": false, "prof_all": true, "debug": false}
  })",
                                 "hf.json");
  EXPECT_EQ(cfg.zero.stage, 3);
  EXPECT_FALSE(cfg.fp16.enabled);
  EXPECT_FALSE(cfg.bf16);
  EXPECT_DOUBLE_EQ(cfg.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(cfg.scheduler.warmup_max_lr, cfg.optimizer.lr);
  EXPECT_EQ(cfg.zero.offload_param.device, OffloadDevice::Cpu);
  EXPECT_TRUE(has_warning(cfg, "optimizer.params.betas is \"auto\""));
  EXPECT_EQ(resolve_batch(cfg, 8).train_batch_size, 32);
}

TEST(ConfigOverrides, ValuesAreParsedAsJsonElseString) {
  Config cfg = parse_config_text(with_batch(R"("zero_optimization": {"stage": 1})"), "t",
                                 {"zero_optimization.stage=2", "train.max_steps=20", "data.train=/x/*.bin",
                                  "optimizer.params.betas=[0.5,0.6]", "wall_clock_breakdown=true"});
  EXPECT_EQ(cfg.zero.stage, 2);
  EXPECT_EQ(cfg.train.max_steps, 20);
  EXPECT_EQ(cfg.data.train, std::vector<std::string>{"/x/*.bin"});
  EXPECT_DOUBLE_EQ(cfg.optimizer.beta1, 0.5);
  EXPECT_TRUE(cfg.wall_clock_breakdown);
  EXPECT_FALSE(cfg.data.embedded_default);
  EXPECT_EQ(cfg.optimizer.type, OptimizerType::AdamW);  // an optimizer section without type means zerotrain's default
}

TEST(ConfigOverrides, ValidatedLikeTheFile) {
  EXPECT_EQ(config_error(with_batch(""), {"zero_optimization.stag=2"}),
            "test.json: unknown key 'zero_optimization.stag' (did you mean 'zero_optimization.stage'?)");
  EXPECT_EQ(config_error(with_batch(""), {"zero_optimization.stage=4"}),
            "test.json: zero_optimization.stage: expected an integer in [0, 3], found 4 (integer)");
  EXPECT_EQ(config_error(with_batch(""), {"train_micro_batch_size_per_gpu.x=1"}),
            "test.json: override 'train_micro_batch_size_per_gpu.x=1': train_micro_batch_size_per_gpu is not a "
            "JSON object");
  EXPECT_EQ(config_error(with_batch(""), {"noequals"}), "test.json: override 'noequals': expected key.path=value");
  EXPECT_EQ(config_error(with_batch(""), {"a..b=1"}), "test.json: override 'a..b=1': empty key in 'a..b'");
}

TEST(KeySuggest, EditDistance) {
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("stage", "stage"), 0u);
  EXPECT_EQ(closest_key("stag", {"stage", "steps", "sub_group_size"}), "stage");
}

}  // namespace
}  // namespace zt
