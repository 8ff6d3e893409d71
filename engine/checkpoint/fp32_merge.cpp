#include "engine/checkpoint/fp32_merge.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/base/error.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/crc32.h"
#include "engine/checkpoint/durable_file.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/zero/partition_map.h"

namespace zt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string find_tag_dir(const std::string& dir, const std::string& tag) {
  if (!tag.empty()) {
    const fs::path p = fs::path(dir) / tag;
    if (!fs::exists(p / "manifest.json"))
      throw RuntimeError("checkpoint tag '" + tag + "': '" + (p / "manifest.json").string() + "' not found");
    return p.string();
  }
  if (fs::exists(fs::path(dir) / "manifest.json")) return dir;
  return resolve_checkpoint_dir("latest", dir);
}

json read_manifest(const std::string& tag_dir) {
  const fs::path path = fs::path(tag_dir) / "manifest.json";
  std::ifstream in(path);
  if (!in) throw RuntimeError("'" + path.string() + "' not found: not a zerotrain checkpoint directory");
  try {
    json m = json::parse(in);
    if (m.at("format_version").get<int>() != kCheckpointFormatVersion)
      throw RuntimeError("format version " + m.at("format_version").dump() + " is not supported");
    return m;
  } catch (const std::exception& e) {
    throw RuntimeError("checkpoint manifest '" + path.string() + "': " + e.what());
  }
}

// One rank's shard. Its master bytes go to the output by in-kernel copies (sendfile: page cache to page cache, never
// through this process's memory); its CRC-32 is computed by a second thread over read-only mappings of the same
// pages.
struct ShardSource {
  std::string path;
  int fd = -1;
  uint64_t master_offset = 0;  // file offset of master[0]
  bool has_prefix_crc = false;  // the manifest records prefix_crc32
  uint64_t prefix_bytes = 0;    // header + master: the bytes the CRC covers
  uint32_t prefix_crc = 0;      // the manifest's
  ~ShardSource() {
    if (fd >= 0) ::close(fd);
  }
};

// Mapped a window at a time and unmapped behind, so the pages never accumulate in the process's RSS.
constexpr uint64_t kCrcWindow = 16u << 20;

uint32_t crc32_of_prefix(const ShardSource& s, const std::atomic<bool>& cancel) {
  uint32_t crc = 0;
  for (uint64_t at = 0; at < s.prefix_bytes && !cancel; at += kCrcWindow) {
    const size_t n = static_cast<size_t>(std::min(kCrcWindow, s.prefix_bytes - at));
    void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, s.fd, static_cast<off_t>(at));
    if (p == MAP_FAILED) throw RuntimeError("cannot map '" + s.path + "' to check it: " + std::strerror(errno));
    ::madvise(p, n, MADV_SEQUENTIAL | MADV_WILLNEED);
    crc = crc32_update(crc, p, n);
    ::munmap(p, n);
  }
  return crc;
}

struct OutputFile {
  std::string path;  // final name
  std::vector<size_t> params;
  uint64_t bytes = 0;
};

}  // namespace

std::string hf_gpt2_config_json(int n_layer, int n_head, int n_embd, int vocab_size, int block_size) {
  json c = {{"architectures", {"GPT2LMHeadModel"}},
            {"model_type", "gpt2"},
            {"vocab_size", vocab_size},
            {"n_positions", block_size},
            {"n_ctx", block_size},
            {"n_embd", n_embd},
            {"n_layer", n_layer},
            {"n_head", n_head},
            {"n_inner", nullptr},
            {"activation_function", "gelu_new"},  // GELU, tanh approximation, as zerotrain's kernels
            {"layer_norm_epsilon", 1e-5},
            {"resid_pdrop", 0.0},
            {"embd_pdrop", 0.0},
            {"attn_pdrop", 0.0},
            {"initializer_range", 0.02},
            {"scale_attn_weights", true},
            {"tie_word_embeddings", true},
            {"use_cache", true},
            {"torch_dtype", "float32"}};
  if (vocab_size > 50256) c["bos_token_id"] = c["eos_token_id"] = 50256;  // GPT-2's <|endoftext|>
  return c.dump(2) + "\n";
}

MergeReport inspect_checkpoint(const std::string& checkpoint_dir, const std::string& tag) {
  MergeReport r;
  r.tag_dir = find_tag_dir(checkpoint_dir, tag);
  const json m = read_manifest(r.tag_dir);
  try {
    r.stage = m.at("stage").get<int>();
    r.world_size = m.at("world_size").get<int>();
    r.num_params = m.at("num_params").get<uint64_t>();
    r.num_tensors = m.at("params").size();
  } catch (const std::exception& e) {
    throw RuntimeError("checkpoint manifest '" + (fs::path(r.tag_dir) / "manifest.json").string() +
                       "' is malformed: " + e.what());
  }
  if (r.world_size < 1) throw RuntimeError("checkpoint '" + r.tag_dir + "': world size " +
                                           std::to_string(r.world_size));
  return r;
}

MergeReport merge_checkpoint_to_fp32(const std::string& checkpoint_dir, const std::string& output,
                                     const MergeOptions& options) {
  MergeReport report = inspect_checkpoint(checkpoint_dir, options.tag);
  const json m = read_manifest(report.tag_dir);
  const int world = report.world_size;
  const std::string manifest_path = (fs::path(report.tag_dir) / "manifest.json").string();

  // The shards, checked against the manifest (size; CRC-32 while streaming) before anything is renamed into place.
  std::vector<std::unique_ptr<ShardSource>> shards(static_cast<size_t>(world));
  for (const json& f : m.at("files")) {
    const int r = f.at("rank").get<int>();
    if (r < 0 || r >= world) throw RuntimeError("checkpoint manifest '" + manifest_path + "' lists a shard for rank " +
                                                std::to_string(r));
    auto s = std::make_unique<ShardSource>();
    s->path = (fs::path(report.tag_dir) / f.at("name").get<std::string>()).string();
    std::error_code ec;
    const uint64_t bytes = fs::file_size(s->path, ec);
    if (ec) throw RuntimeError("checkpoint shard '" + s->path + "' is missing (" + ec.message() + ")");
    if (bytes != f.at("bytes").get<uint64_t>())
      throw RuntimeError("checkpoint shard '" + s->path + "' has " + std::to_string(bytes) +
                         " bytes, the manifest says " + f.at("bytes").dump() + " (truncated?)");
    SafetensorsFile header(s->path);
    const StTensorInfo* master = header.find("master");
    if (!master || master->dtype != StDtype::F32)
      throw RuntimeError("checkpoint shard '" + s->path + "' has no F32 'master' tensor");
    s->master_offset = header.data_offset() + master->begin;
    s->has_prefix_crc = f.contains("prefix_crc32");
    if (options.verify && s->has_prefix_crc) {
      s->prefix_bytes = f.at("prefix_bytes").get<uint64_t>();
      s->prefix_crc = f.at("prefix_crc32").get<uint32_t>();
      if (s->prefix_bytes != header.data_offset() + master->end)
        throw RuntimeError("checkpoint shard '" + s->path + "': its master tensor ends at byte " +
                           std::to_string(header.data_offset() + master->end) + ", the manifest says " +
                           std::to_string(s->prefix_bytes) + " (corrupted header?)");
    } else if (options.verify) {
      // A manifest without prefix checksums: the whole file's, in a pass of its own.
      if (crc32_file(s->path) != f.at("crc32").get<uint32_t>())
        throw RuntimeError("checkpoint shard '" + s->path + "' fails its checksum: it is corrupted");
    }
    s->fd = ::open(s->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) throw RuntimeError("cannot open '" + s->path + "': " + std::strerror(errno));
    ::posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (shards[static_cast<size_t>(r)]) throw RuntimeError("checkpoint manifest '" + manifest_path +
                                                           "' lists rank " + std::to_string(r) + " twice");
    shards[static_cast<size_t>(r)] = std::move(s);
  }
  for (int r = 0; r < world; ++r)
    if (!shards[static_cast<size_t>(r)]) throw RuntimeError("checkpoint has no shard for rank " + std::to_string(r));

  std::vector<UnitRange> units;
  for (const json& u : m.at("partition").at("units"))
    units.push_back({u.at("flat_offset").get<size_t>(), u.at("numel").get<size_t>()});
  const PartitionMap map(units, world);
  for (const auto& s : shards) {
    const SafetensorsFile header(s->path);
    if (header.find("master")->numel() != map.partition_numel())
      throw RuntimeError("checkpoint shard '" + s->path + "': master has " +
                         std::to_string(header.find("master")->numel()) + " elements, the partition map " +
                         std::to_string(map.partition_numel()));
  }

  // The parameters must tile the flat layout in order, unit after unit: then the output stream is that layout.
  std::vector<ParamInfo> params;
  size_t expect = 0;
  for (const json& p : m.at("params")) {
    ParamInfo info;
    info.name = p.at("name").get<std::string>();
    info.shape = p.at("shape").get<std::vector<int64_t>>();
    info.offset = p.at("offset").get<size_t>();
    info.numel = p.at("numel").get<size_t>();
    size_t shape_numel = 1;
    for (int64_t d : info.shape) shape_numel *= static_cast<size_t>(d);
    if (info.offset != expect || shape_numel != info.numel)
      throw RuntimeError("checkpoint manifest '" + manifest_path + "': tensor '" + info.name +
                         "' does not follow the previous one in the flat layout or its shape does not match its size");
    expect += info.numel;
    params.push_back(std::move(info));
  }
  size_t unit_end = 0;
  for (const UnitShard& u : map.units()) {
    if (u.flat_offset != unit_end)
      throw RuntimeError("checkpoint manifest '" + manifest_path + "': the partition units are not contiguous");
    unit_end += u.numel;
  }
  if (unit_end != expect || expect != report.num_params)
    throw RuntimeError("checkpoint manifest '" + manifest_path + "': the parameters cover " + std::to_string(expect) +
                       " elements, the units " + std::to_string(unit_end) + ", num_params says " +
                       std::to_string(report.num_params));

  // Output files, in parameter order, each at most max_shard_bytes of tensor data.
  const bool single_file = output.size() > 12 && output.substr(output.size() - 12) == ".safetensors";
  std::vector<OutputFile> outs(1);
  for (size_t i = 0; i < params.size(); ++i) {
    const uint64_t b = params[i].numel * sizeof(float);
    if (!single_file && !outs.back().params.empty() && outs.back().bytes + b > options.max_shard_bytes)
      outs.emplace_back();
    outs.back().params.push_back(i);
    outs.back().bytes += b;
  }
  for (size_t g = 0; g < outs.size(); ++g) {
    if (single_file) {
      outs[g].path = output;
    } else if (outs.size() == 1) {
      outs[g].path = (fs::path(output) / "model.safetensors").string();
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", g + 1, outs.size());
      outs[g].path = (fs::path(output) / buf).string();
    }
  }
  std::error_code ec;
  if (!single_file) fs::create_directories(output, ec);
  if (ec) throw RuntimeError("cannot create output directory '" + output + "': " + ec.message());

  // Written as <name>.tmp; removed again unless the whole merge succeeds.
  struct TmpFiles {
    std::vector<std::string> paths;
    bool keep = false;
    ~TmpFiles() {
      std::error_code e;
      if (!keep)
        for (const std::string& p : paths) fs::remove(p, e);
    }
  } tmps;

  // The checksums, on a thread of their own, while the copy runs.
  std::vector<uint32_t> crcs(shards.size(), 0);
  std::exception_ptr crc_error;
  std::atomic<bool> cancel_crc{false};  // the copy failed: stop early
  std::thread crc_thread([&] {
    try {
      for (size_t r = 0; r < shards.size(); ++r)
        if (options.verify && shards[r]->has_prefix_crc) crcs[r] = crc32_of_prefix(*shards[r], cancel_crc);
    } catch (...) {
      crc_error = std::current_exception();
    }
  });
  struct Join {
    std::thread& t;
    std::atomic<bool>& cancel;
    ~Join() {
      cancel = true;
      if (t.joinable()) t.join();
    }
  } join_crc{crc_thread, cancel_crc};

  // The output stream is the model's flat fp32 layout, unit after unit; unit u's elements are rank 0's shard of
  // it, then rank 1's, ... (each shard's padding left out). So every shard file is read once, front to back.
  const uint64_t total = expect * sizeof(float);
  uint64_t done = 0;
  size_t g = 0;
  std::unique_ptr<SafetensorsWriter> writer;
  uint64_t left_in_file = 0;
  auto open_next = [&] {
    std::vector<StTensorSpec> specs;
    for (size_t i : outs[g].params) specs.push_back({params[i].name, StDtype::F32, params[i].shape});
    tmps.paths.push_back(outs[g].path + ".tmp");
    writer = std::make_unique<SafetensorsWriter>(tmps.paths.back(), specs,
                                                 std::map<std::string, std::string>{{"format", "pt"}});
    left_in_file = outs[g].bytes;
  };
  open_next();
  for (const UnitShard& u : map.units()) {
    for (size_t r = 0; r < shards.size(); ++r) {
      const size_t first = std::min(u.numel, r * u.shard);
      const size_t valid = std::min(u.numel, first + u.shard) - first;
      uint64_t from = shards[r]->master_offset + u.local_offset * sizeof(float);
      uint64_t left = valid * sizeof(float);
      while (left > 0) {
        while (left_in_file == 0) {  // this output file is complete: close it (fsync), open the next
          writer->close();
          if (++g == outs.size()) throw RuntimeError("merge: the shards hold more data than the manifest's tensors");
          open_next();
        }
        const uint64_t n = std::min(left, left_in_file);
        writer->copy_from_file(shards[r]->fd, shards[r]->path, from, n);
        from += n;
        left -= n;
        left_in_file -= n;
        done += n;
      }
      writer->start_writeback();
      if (options.on_progress) options.on_progress(done, total);
    }
  }
  if (done != total || g + 1 != outs.size())
    throw RuntimeError("merge: copied " + std::to_string(done) + " of " + std::to_string(total) + " bytes");
  writer->close();
  writer.reset();
  crc_thread.join();
  if (crc_error) std::rethrow_exception(crc_error);
  for (size_t r = 0; r < shards.size(); ++r) {
    const ShardSource& s = *shards[r];
    report.bytes_read += s.has_prefix_crc && options.verify ? s.prefix_bytes : 0;
    if (options.verify && s.has_prefix_crc && crcs[r] != s.prefix_crc)
      throw RuntimeError("checkpoint shard '" + s.path + "' fails its checksum (CRC-32 " + std::to_string(crcs[r]) +
                         " of its first " + std::to_string(s.prefix_bytes) + " bytes, the manifest says " +
                         std::to_string(s.prefix_crc) + "): it is corrupted; nothing was written");
  }
  if (report.bytes_read == 0) report.bytes_read = done;

  // Every byte verified: into place.
  for (size_t i = 0; i < outs.size(); ++i) {
    rename_durably(tmps.paths[i], outs[i].path);
    report.bytes_written += fs::file_size(outs[i].path);
    report.files.push_back(outs[i].path);
  }
  tmps.keep = true;
  if (!single_file) {
    const fs::path index = fs::path(output) / "model.safetensors.index.json";
    if (outs.size() > 1) {
      json weight_map = json::object();
      for (const OutputFile& o : outs)
        for (size_t i : o.params) weight_map[params[i].name] = fs::path(o.path).filename().string();
      const json j = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
      write_file_atomically(index.string(), j.dump(2) + "\n");
      report.files.push_back(index.string());
    } else {
      fs::remove(index, ec);  // an earlier sharded merge's index would shadow the new model.safetensors
    }
    const json& d = m.at("model");
    const fs::path config = fs::path(output) / "config.json";
    write_file_atomically(config.string(),
                          hf_gpt2_config_json(d.at("n_layer").get<int>(), d.at("n_head").get<int>(),
                                              d.at("n_embd").get<int>(), d.at("vocab_size").get<int>(),
                                              d.at("block_size").get<int>()));
    report.files.push_back(config.string());
  }
  return report;
}

}  // namespace zt
