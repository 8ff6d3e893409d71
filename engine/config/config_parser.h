#pragma once
// Parsing, validation and printing of the typed Config (engine/config/config.h). The JSON is read once, here;
// every error is a ConfigError naming the source, the JSON path, the value found and what was expected.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace zt {

// Reads and validates a DeepSpeed-style JSON config plus zerotrain's sections. overrides are "key.path=value"
// (the value is parsed as JSON when it parses, else taken as a string) applied before validation.
Config parse_config_file(const std::string& path, const std::vector<std::string>& overrides = {});
Config parse_config_text(const std::string& json_text, const std::string& source_name,
                         const std::vector<std::string>& overrides = {});

// DeepSpeed's derivation of the missing batch sizes for world_size ranks; throws ConfigError with the arithmetic
// when the three disagree or neither train_batch_size nor train_micro_batch_size_per_gpu is given.
BatchConfig resolve_batch(const Config& cfg, int world_size);

// The resolved config with canonical (non-deprecated) DeepSpeed keys plus zerotrain's sections; parsing it again
// gives the same Config. Batch sizes appear as written (absent ones are left out).
nlohmann::json config_to_json(const Config& cfg);

// Fills n_layer..block_size from cfg.preset (gpt2-tiny, gpt2-124M, gpt2-350M, gpt2-774M, gpt2-1558M); the parser
// calls it before applying explicit fields. Throws ConfigError for an unknown preset name.
void apply_model_preset(ModelConfig& cfg);
const std::vector<std::string>& model_preset_names();

// Parses "a.b.c=value" and sets that path in doc (creating objects on the way); throws ConfigError.
void apply_override(nlohmann::json& doc, const std::string& override_text);

// offload_param.device = nvme: what must hold for the run to be possible at all, given the largest unit shard
// (elements) of a rank's partition: buffer_size and max_in_cpu at least that shard (a shard is read whole into one
// buffer). Throws ConfigError naming the key. The parser calls it when world_size is in the config; the stage-3
// engine calls it again with the real partition before it creates any file.
void check_offload_param_buffers(const OffloadParamConfig& o, int64_t largest_shard, int world_size);

const char* offload_device_name(OffloadDevice d);
const char* optimizer_type_name(OptimizerType t);
const char* scheduler_type_name(SchedulerType t);
const char* comm_backend_name(CommBackend b);

}  // namespace zt
