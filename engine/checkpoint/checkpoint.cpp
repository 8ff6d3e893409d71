#include "engine/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/checkpoint/crc32.h"
#include "engine/checkpoint/durable_file.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/config/config_parser.h"

namespace zt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string rank_file_name(int rank) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "rank_%05d.safetensors", rank);
  return buf;
}

// Tests kill a rank at a named moment of a save: ZT_INJECT_SAVE_CRASH=rank:point.
void crash_point(int rank, const char* point) {
  const char* spec = std::getenv("ZT_INJECT_SAVE_CRASH");
  if (!spec) return;
  const std::string s = spec;
  const auto colon = s.find(':');
  if (colon == std::string::npos) return;
  if (std::atoi(s.substr(0, colon).c_str()) == rank && s.substr(colon + 1) == point) std::raise(SIGKILL);
}

json loader_json(const LoaderState& s) {
  return {{"epoch", s.epoch}, {"shard", s.shard}, {"position", s.position}};
}

LoaderState loader_from_json(const json& j) {
  LoaderState s;
  s.epoch = j.at("epoch").get<uint64_t>();
  s.shard = j.at("shard").get<uint64_t>();
  s.position = j.at("position").get<uint64_t>();
  return s;
}

json model_json(const ModelDims& d) {
  return {{"n_layer", d.n_layer}, {"n_head", d.n_head}, {"n_embd", d.n_embd}, {"vocab_size", d.vocab_size},
          {"block_size", d.block_size}};
}

int64_t tag_step(const std::string& name) {
  const std::string prefix = "global_step";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  for (size_t i = prefix.size(); i < name.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  return std::stoll(name.substr(prefix.size()));
}

void prune_old_tags(const fs::path& root, int keep_last, const std::string& keep) {
  std::vector<std::pair<int64_t, fs::path>> tags;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp_global_step", 0) == 0 || name.rfind(".old_global_step", 0) == 0) {
      fs::remove_all(e.path(), ec);  // left by a save that was killed
      continue;
    }
    const int64_t step = tag_step(name);
    if (step >= 0 && e.is_directory() && name != keep) tags.emplace_back(step, e.path());
  }
  if (keep_last <= 0) return;
  std::sort(tags.begin(), tags.end());
  const size_t keep_others = static_cast<size_t>(keep_last - 1);
  for (size_t i = 0; i + keep_others < tags.size(); ++i) fs::remove_all(tags[i].second, ec);
}

}  // namespace

std::string save_checkpoint(const Config& cfg, const GPT2& model, ZeroEngine& engine, ProcessGroup& pg,
                            const TrainingProgress& progress) {
  const int rank = pg.rank(), world = pg.size();
  const fs::path root = cfg.train.save_dir;
  const std::string tag = "global_step" + std::to_string(progress.step);
  const fs::path tmp = root / (".tmp_" + tag), final_dir = root / tag;

  if (rank == 0) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw RuntimeError("cannot create checkpoint directory '" + tmp.string() + "': " + ec.message());
  }
  pg.barrier();

  // This rank's shard: every state buffer in partition layout.
  const PartitionMap& map = engine.partition_map();
  const std::vector<std::string> names = engine.state_names();
  std::vector<StTensorSpec> specs;
  for (const std::string& n : names)
    specs.push_back({n, StDtype::F32, {static_cast<int64_t>(map.partition_numel())}});
  const fs::path shard_path = tmp / rank_file_name(rank);
  {
    SafetensorsWriter writer(shard_path.string(), specs,
                             {{"rank", std::to_string(rank)},
                              {"world_size", std::to_string(world)},
                              {"loader", loader_json(progress.loader).dump()}});
    std::vector<float> buf(map.partition_numel());
    for (const std::string& n : names) {
      engine.export_partition(n, buf.data());
      writer.write(n, buf.data(), buf.size());
      if (n == names.front()) crash_point(rank, "mid_shard");
    }
    writer.close();
  }
  crash_point(rank, "after_shard");
  // The whole file's CRC (checked on resume) and that of its prefix up to the end of "master" (header included):
  // zero_to_fp32 reads only that prefix and checks it while streaming.
  uint64_t prefix = 0;
  {
    const SafetensorsFile written(shard_path.string());
    prefix = written.data_offset() + written.find("master")->end;
  }
  uint64_t bytes = 0;
  uint32_t prefix_crc = 0;
  const uint32_t crc = crc32_file(shard_path.string(), &bytes, prefix, &prefix_crc);
  // Raw 32-bit words through an allgather (a copy, no arithmetic): CRCs and sizes of every rank's shard.
  constexpr size_t kWords = 6;
  uint32_t mine[kWords] = {crc, static_cast<uint32_t>(bytes), static_cast<uint32_t>(bytes >> 32),
                           prefix_crc, static_cast<uint32_t>(prefix), static_cast<uint32_t>(prefix >> 32)};
  std::vector<uint32_t> all(kWords * static_cast<size_t>(world));
  pg.allgather(mine, all.data(), kWords, DType::F32);

  // The consolidated model in working precision, for serving (DeepSpeed's
  // stage3_gather_16bit_weights_on_model_save): a collective gather, written by rank 0 into the tag.
  json exports = json::array();
  if (cfg.zero.stage3_gather_16bit_weights_on_model_save) {
    std::vector<float> full(model.num_params());
    engine.gather_full_params(full.data());
    if (rank == 0) {
      const StDtype dt = cfg.fp16.enabled ? StDtype::F16 : cfg.bf16 ? StDtype::BF16 : StDtype::F32;
      std::vector<StTensorRef> refs;
      for (const ParamInfo& p : model.params()) refs.push_back({p.name, dt, p.shape, full.data() + p.offset});
      const fs::path path = tmp / "model.safetensors";
      write_safetensors(path.string(), refs, {{"format", "pt"}});
      uint64_t b = 0;
      const uint32_t c = crc32_file(path.string(), &b);
      exports.push_back({{"name", "model.safetensors"}, {"dtype", st_dtype_name(dt)}, {"bytes", b}, {"crc32", c}});
    }
  }

  if (rank == 0) {
    crash_point(rank, "before_manifest");
    json m;
    m["format_version"] = kCheckpointFormatVersion;
    m["zerotrain_version"] = ZT_VERSION;
    m["tag"] = tag;
    m["step"] = progress.step;
    m["updates"] = progress.updates;
    m["stage"] = engine.stage();
    m["world_size"] = world;
    m["precision"] = cfg.fp16.enabled ? "fp16" : cfg.bf16 ? "bf16" : "fp32";
    m["optimizer"] = optimizer_type_name(cfg.optimizer.type);
    m["state_names"] = names;
    m["state_dtype"] = "F32";
    m["model"] = model_json(model.dims());
    m["num_params"] = model.num_params();
    json units = json::array();
    for (const UnitShard& u : map.units()) units.push_back({{"flat_offset", u.flat_offset}, {"numel", u.numel}});
    m["partition"] = {{"align", PartitionMap::kAlign}, {"partition_numel", map.partition_numel()}, {"units", units}};
    json params = json::array();
    for (const ParamInfo& p : model.params())
      params.push_back({{"name", p.name}, {"shape", p.shape}, {"offset", p.offset}, {"numel", p.numel},
                        {"unit", p.unit}});
    m["params"] = params;
    const ScalerState sc = engine.scaler_state();
    m["loss_scaler"] = {{"scale", sc.scale}, {"hysteresis_left", sc.hysteresis_left}, {"clean_steps", sc.clean_steps}};
    m["data"] = {{"micro_batch", progress.micro_batch}, {"loader_rank0", loader_json(progress.loader)}};
    json files = json::array();
    for (int r = 0; r < world; ++r) {
      const uint32_t* w = &all[kWords * static_cast<size_t>(r)];
      files.push_back({{"name", rank_file_name(r)},
                       {"rank", r},
                       {"bytes", static_cast<uint64_t>(w[1]) | (static_cast<uint64_t>(w[2]) << 32)},
                       {"crc32", w[0]},
                       {"prefix_bytes", static_cast<uint64_t>(w[4]) | (static_cast<uint64_t>(w[5]) << 32)},
                       {"prefix_crc32", w[3]}});
    }
    m["files"] = files;
    m["exports"] = exports;
    write_file_atomically((tmp / "manifest.json").string(), m.dump(1) + "\n");
    fsync_path(tmp.string(), true);
    crash_point(rank, "before_rename");

    std::error_code ec;
    const fs::path old = root / (".old_" + tag);
    if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);  // re-saving a step that exists (after a resume)
    fs::rename(tmp, final_dir, ec);
    if (ec) throw RuntimeError("cannot rename '" + tmp.string() + "' to '" + final_dir.string() + "': " + ec.message());
    fsync_path(root.string(), true);
    crash_point(rank, "before_latest");
    write_file_atomically((root / "latest").string(), tag + "\n");
    prune_old_tags(root, cfg.train.keep_last, tag);
  }
  pg.barrier();
  return final_dir.string();
}

std::string resolve_checkpoint_dir(const std::string& resume, const std::string& save_dir) {
  fs::path dir;
  if (resume == "latest") {
    const fs::path latest = fs::path(save_dir) / "latest";
    std::ifstream in(latest);
    std::string tag;
    if (!in || !(in >> tag))
      throw RuntimeError("no checkpoint in '" + save_dir + "': '" + latest.string() + "' is missing or empty");
    dir = fs::path(save_dir) / tag;
  } else if (fs::exists(fs::path(resume) / "manifest.json")) {
    dir = resume;
  } else {
    dir = fs::path(save_dir) / resume;
  }
  if (!fs::exists(dir / "manifest.json"))
    throw RuntimeError("checkpoint '" + dir.string() + "' has no manifest.json (not a zerotrain checkpoint, or an "
                       "unfinished save)");
  return dir.string();
}

TrainingProgress load_checkpoint(const std::string& dir, const GPT2& model, ZeroEngine& engine, ProcessGroup& pg,
                                 int64_t micro_batch, bool shuffle) {
  const fs::path root = dir;
  const fs::path manifest_path = root / "manifest.json";
  json m;
  try {
    std::ifstream in(manifest_path);
    if (!in) throw RuntimeError("cannot open");
    m = json::parse(in);
  } catch (const std::exception& e) {
    throw RuntimeError("checkpoint manifest '" + manifest_path.string() + "' is unreadable: " + e.what());
  }
  try {
    const int version = m.at("format_version").get<int>();
    if (version != kCheckpointFormatVersion)
      throw RuntimeError("format version " + std::to_string(version) + ", this zerotrain reads version " +
                         std::to_string(kCheckpointFormatVersion));
    // The model must be the one that was saved.
    const json here = model_json(model.dims());
    if (m.at("model") != here)
      throw RuntimeError("it was saved from another model shape: " + m.at("model").dump() + ", this run's model is " +
                         here.dump());
    const json& params = m.at("params");
    if (params.size() != model.params().size())
      throw RuntimeError("it has " + std::to_string(params.size()) + " parameters, the model " +
                         std::to_string(model.params().size()));
    for (size_t i = 0; i < params.size(); ++i) {
      const ParamInfo& p = model.params()[i];
      if (params[i].at("name") != p.name || params[i].at("shape").get<std::vector<int64_t>>() != p.shape ||
          params[i].at("offset").get<size_t>() != p.offset)
        throw RuntimeError("tensor '" + params[i].at("name").get<std::string>() + "' does not match the model's '" +
                           p.name + "'");
    }
  } catch (const RuntimeError& e) {
    throw RuntimeError("checkpoint '" + dir + "': " + e.what());
  } catch (const std::exception& e) {
    throw RuntimeError("checkpoint manifest '" + manifest_path.string() + "' is malformed: " + e.what());
  }

  const int old_world = m["world_size"].get<int>();
  // Every file must be whole before anything is loaded.
  std::vector<std::unique_ptr<SafetensorsFile>> shards(static_cast<size_t>(old_world));
  for (const json& f : m.at("files")) {
    const fs::path path = root / f.at("name").get<std::string>();
    const int r = f.at("rank").get<int>();
    if (r < 0 || r >= old_world) throw RuntimeError("checkpoint manifest '" + manifest_path.string() + "': bad rank");
    if (!fs::exists(path)) throw RuntimeError("checkpoint shard '" + path.string() + "' is missing");
    uint64_t bytes = 0;
    const uint32_t crc = crc32_file(path.string(), &bytes);
    if (bytes != f.at("bytes").get<uint64_t>())
      throw RuntimeError("checkpoint shard '" + path.string() + "' has " + std::to_string(bytes) +
                         " bytes, the manifest says " + std::to_string(f.at("bytes").get<uint64_t>()) +
                         " (truncated?)");
    if (crc != f.at("crc32").get<uint32_t>())
      throw RuntimeError("checkpoint shard '" + path.string() + "' fails its checksum (CRC-32 " + std::to_string(crc) +
                         ", manifest " + std::to_string(f.at("crc32").get<uint32_t>()) + "): it is corrupted");
    shards[static_cast<size_t>(r)] = std::make_unique<SafetensorsFile>(path.string());
  }
  for (int r = 0; r < old_world; ++r)
    if (!shards[static_cast<size_t>(r)])
      throw RuntimeError("checkpoint '" + dir + "': the manifest lists no shard for rank " + std::to_string(r));

  std::vector<UnitRange> units;
  for (const json& u : m.at("partition").at("units"))
    units.push_back({u.at("flat_offset").get<size_t>(), u.at("numel").get<size_t>()});
  const PartitionMap old_map(units, old_world);
  if (old_map.partition_numel() != m.at("partition").at("partition_numel").get<size_t>())
    throw RuntimeError("checkpoint manifest '" + manifest_path.string() + "': partition map does not add up");

  const std::vector<std::string> saved_names = m.at("state_names").get<std::vector<std::string>>();
  std::vector<float> full(model.num_params()), part(old_map.partition_numel());
  for (const std::string& name : engine.state_names()) {
    if (std::find(saved_names.begin(), saved_names.end(), name) == saved_names.end())
      throw RuntimeError("checkpoint '" + dir + "' has no '" + name + "' state (saved with optimizer " +
                         m.value("optimizer", std::string("?")) + ")");
    for (int r = 0; r < old_world; ++r) {
      shards[static_cast<size_t>(r)]->read_float(name, part.data(), part.size());
      old_map.partition_to_flat(part.data(), full.data(), r);
    }
    engine.import_full(name, full.data());
  }
  engine.finish_import();
  const json& sc = m.at("loss_scaler");
  engine.set_scaler_state({sc.at("scale").get<float>(), sc.at("hysteresis_left").get<int>(),
                           sc.at("clean_steps").get<int>()});

  TrainingProgress p;
  p.step = m.at("step").get<int64_t>();
  p.updates = m.at("updates").get<int64_t>();
  p.micro_batch = micro_batch;
  const int64_t old_micro = m.at("data").at("micro_batch").get<int64_t>();
  if (old_world == pg.size() && old_micro == micro_batch) {
    const auto& meta = shards[static_cast<size_t>(pg.rank())]->metadata();
    p.loader = loader_from_json(json::parse(meta.at("loader")));
  } else {
    // Another world size or micro-batch: the same global position, expressed in this rank's terms.
    LoaderState l = loader_from_json(m.at("data").at("loader_rank0"));
    const uint64_t consumed = l.position * static_cast<uint64_t>(old_world) *
                              static_cast<uint64_t>(shuffle ? 1 : old_micro);
    const uint64_t per = static_cast<uint64_t>(pg.size()) * static_cast<uint64_t>(shuffle ? 1 : micro_batch);
    if (consumed % per != 0 && pg.rank() == 0)
      spdlog::warn("resume: the data position ({} samples) does not divide over {} ranks; rounding down", consumed,
                   pg.size());
    l.position = consumed / per;
    p.loader = l;
  }
  if (pg.rank() == 0)
    spdlog::info("resumed from {} (step {}, saved at ZeRO stage {} on {} ranks)", dir, p.step, m["stage"].get<int>(),
                 old_world);
  return p;
}

}  // namespace zt
