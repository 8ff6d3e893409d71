#include "engine/checkpoint/fp32_merge.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "engine/base/error.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/crc32.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/zero/partition_map.h"

namespace zt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string find_tag_dir(const std::string& dir, const std::string& tag) {
  if (!tag.empty()) return (fs::path(dir) / tag).string();
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

// A rank's shard: positioned reads of its "master" tensor (no mapping, so memory stays one tensor).
struct ShardReader {
  std::string path;
  int fd = -1;
  uint64_t master_offset = 0;  // file offset of master[0]
  size_t master_numel = 0;
  ~ShardReader() {
    if (fd >= 0) ::close(fd);
  }
  void read(size_t first, size_t n, float* out, uint64_t& bytes_read) const {
    char* dst = reinterpret_cast<char*>(out);
    size_t left = n * sizeof(float);
    uint64_t off = master_offset + first * sizeof(float);
    while (left > 0) {
      const ssize_t got = ::pread(fd, dst, left, static_cast<off_t>(off));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        throw RuntimeError("read of '" + path + "' at byte " + std::to_string(off) + " failed: " +
                           (got == 0 ? std::string("unexpected end of file") : std::strerror(errno)));
      dst += got;
      off += static_cast<uint64_t>(got);
      left -= static_cast<size_t>(got);
      bytes_read += static_cast<uint64_t>(got);
    }
  }
};

}  // namespace

uint64_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) throw ConfigError("'" + text + "' is not a size (e.g. 5GB, 500MB)");
  const double value = std::stod(text.substr(0, i));
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else throw ConfigError("'" + text + "': unknown size unit '" + text.substr(i) + "' (B, KB, MB, GB, KiB, MiB, GiB)");
  if (value <= 0) throw ConfigError("size '" + text + "' must be positive");
  return static_cast<uint64_t>(value * mult);
}

MergeReport inspect_checkpoint(const std::string& checkpoint_dir, const std::string& tag) {
  MergeReport r;
  r.tag_dir = find_tag_dir(checkpoint_dir, tag);
  const json m = read_manifest(r.tag_dir);
  r.stage = m.at("stage").get<int>();
  r.world_size = m.at("world_size").get<int>();
  r.num_params = m.at("num_params").get<uint64_t>();
  r.num_tensors = m.at("params").size();
  return r;
}

MergeReport merge_checkpoint_to_fp32(const std::string& checkpoint_dir, const std::string& output,
                                     const MergeOptions& options) {
  MergeReport report = inspect_checkpoint(checkpoint_dir, options.tag);
  const json m = read_manifest(report.tag_dir);
  const int world = report.world_size;

  // The shards, checked against the manifest before anything is written.
  std::vector<std::unique_ptr<ShardReader>> shards(static_cast<size_t>(world));
  for (const json& f : m.at("files")) {
    const int r = f.at("rank").get<int>();
    auto s = std::make_unique<ShardReader>();
    s->path = (fs::path(report.tag_dir) / f.at("name").get<std::string>()).string();
    if (!fs::exists(s->path)) throw RuntimeError("checkpoint shard '" + s->path + "' is missing");
    if (options.verify) {
      uint64_t bytes = 0;
      const uint32_t crc = crc32_file(s->path, &bytes);
      if (bytes != f.at("bytes").get<uint64_t>())
        throw RuntimeError("checkpoint shard '" + s->path + "' has " + std::to_string(bytes) +
                           " bytes, the manifest says " + f.at("bytes").dump() + " (truncated?)");
      if (crc != f.at("crc32").get<uint32_t>())
        throw RuntimeError("checkpoint shard '" + s->path + "' fails its checksum: it is corrupted");
    }
    SafetensorsFile header(s->path);
    const StTensorInfo* master = header.find("master");
    if (!master || master->dtype != StDtype::F32)
      throw RuntimeError("checkpoint shard '" + s->path + "' has no F32 'master' tensor");
    s->master_offset = header.data_offset() + master->begin;
    s->master_numel = master->numel();
    s->fd = ::open(s->path.c_str(), O_RDONLY);
    if (s->fd < 0) throw RuntimeError("cannot open '" + s->path + "': " + std::strerror(errno));
    if (r < 0 || r >= world) throw RuntimeError("checkpoint manifest lists a shard for rank " + std::to_string(r));
    shards[static_cast<size_t>(r)] = std::move(s);
  }
  for (int r = 0; r < world; ++r)
    if (!shards[static_cast<size_t>(r)]) throw RuntimeError("checkpoint has no shard for rank " + std::to_string(r));

  std::vector<UnitRange> units;
  for (const json& u : m.at("partition").at("units"))
    units.push_back({u.at("flat_offset").get<size_t>(), u.at("numel").get<size_t>()});
  const PartitionMap map(units, world);
  for (const auto& s : shards)
    if (s->master_numel != map.partition_numel())
      throw RuntimeError("checkpoint shard '" + s->path + "': master has " + std::to_string(s->master_numel) +
                         " elements, the partition map " + std::to_string(map.partition_numel()));

  std::vector<ParamInfo> params;
  for (const json& p : m.at("params")) {
    ParamInfo info;
    info.name = p.at("name").get<std::string>();
    info.shape = p.at("shape").get<std::vector<int64_t>>();
    info.offset = p.at("offset").get<size_t>();
    info.numel = p.at("numel").get<size_t>();
    info.unit = p.at("unit").get<int>();
    params.push_back(std::move(info));
  }

  // Shards of the output, in parameter order, each at most max_shard_bytes of tensor data.
  const bool single_file = output.size() > 12 && output.substr(output.size() - 12) == ".safetensors";
  std::vector<std::vector<size_t>> groups(1);
  uint64_t group_bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const uint64_t b = params[i].numel * sizeof(float);
    if (!single_file && !groups.back().empty() && group_bytes + b > options.max_shard_bytes) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(i);
    group_bytes += b;
  }
  std::error_code ec;
  if (!single_file) fs::create_directories(output, ec);
  if (ec) throw RuntimeError("cannot create output directory '" + output + "': " + ec.message());

  json weight_map = json::object();
  uint64_t total = 0;
  size_t done = 0;
  std::vector<float> tensor;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::string name;
    if (single_file) {
      name = output;
    } else if (groups.size() == 1) {
      name = (fs::path(output) / "model.safetensors").string();
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", g + 1, groups.size());
      name = (fs::path(output) / buf).string();
    }
    std::vector<StTensorSpec> specs;
    for (size_t i : groups[g]) specs.push_back({params[i].name, StDtype::F32, params[i].shape});
    SafetensorsWriter writer(name, specs, {{"format", "pt"}});
    for (size_t i : groups[g]) {
      const ParamInfo& p = params[i];
      tensor.assign(p.numel, 0.0f);
      size_t covered = 0;
      for (int r = 0; r < world; ++r) {
        const OwnedSlice o = map.owned_slice(p, r);
        if (o.flat_end == o.flat_begin) continue;
        shards[static_cast<size_t>(r)]->read(o.local_begin, o.flat_end - o.flat_begin,
                                             tensor.data() + (o.flat_begin - p.offset), report.bytes_read);
        covered += o.flat_end - o.flat_begin;
      }
      if (covered != p.numel)
        throw RuntimeError("checkpoint '" + report.tag_dir + "': the shards cover " + std::to_string(covered) +
                           " of tensor '" + p.name + "''s " + std::to_string(p.numel) + " elements");
      writer.write(p.name, tensor.data(), tensor.size());
      weight_map[p.name] = fs::path(name).filename().string();
      total += p.numel * sizeof(float);
      if (options.on_tensor) options.on_tensor(++done, params.size());
    }
    writer.close();
    report.bytes_written += fs::file_size(name);
    report.files.push_back(name);
  }
  if (!single_file && groups.size() > 1) {
    const fs::path index = fs::path(output) / "model.safetensors.index.json";
    json j = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream out(index);
    out << j.dump(2) << "\n";
    if (!out) throw RuntimeError("cannot write '" + index.string() + "'");
    report.files.push_back(index.string());
  }
  std::vector<float>().swap(tensor);
  return report;
}

}  // namespace zt
