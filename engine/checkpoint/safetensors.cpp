#include "engine/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.h"
#include "kernels/cpu/half_convert.h"

namespace zt {

using nlohmann::json;

const char* st_dtype_name(StDtype dtype) {
  switch (dtype) {
    case StDtype::F32: return "F32";
    case StDtype::F16: return "F16";
    case StDtype::BF16: return "BF16";
  }
  return "?";
}

size_t st_dtype_size(StDtype dtype) { return dtype == StDtype::F32 ? 4 : 2; }

StDtype st_dtype_from_name(const std::string& name) {
  if (name == "F32") return StDtype::F32;
  if (name == "F16") return StDtype::F16;
  if (name == "BF16") return StDtype::BF16;
  throw ConfigError("safetensors: unsupported dtype '" + name + "' (F32, F16 and BF16 are supported)");
}

size_t StTensorInfo::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw RuntimeError("safetensors " + path + ": " + what);
}

StTensorInfo parse_entry(const std::string& path, const std::string& name, const json& entry) {
  StTensorInfo t;
  t.name = name;
  std::string where = "tensor '" + name + "': ";
  if (!entry.is_object()) fail(path, where + "header entry is not an object");
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) fail(path, where + "missing or non-string dtype");
  std::string dtype = entry["dtype"].get<std::string>();
  if (dtype == "F32") {
    t.dtype = StDtype::F32;
  } else if (dtype == "F16") {
    t.dtype = StDtype::F16;
  } else if (dtype == "BF16") {
    t.dtype = StDtype::BF16;
  } else {
    fail(path, where + "unsupported dtype '" + dtype + "' (F32, F16 and BF16 are supported)");
  }
  if (!entry.contains("shape") || !entry["shape"].is_array()) fail(path, where + "missing or non-array shape");
  for (const json& d : entry["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(path, where + "shape holds a non-integer or negative");
    t.shape.push_back(d.get<int64_t>());
  }
  const json* offsets = entry.contains("data_offsets") ? &entry["data_offsets"] : nullptr;
  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned()) {
    fail(path, where + "data_offsets must be two non-negative integers");
  }
  t.begin = (*offsets)[0].get<uint64_t>();
  t.end = (*offsets)[1].get<uint64_t>();
  return t;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(err));
  }
  size_t file_bytes = static_cast<size_t>(st.st_size);
  if (file_bytes < 8) {
    ::close(fd);
    fail(path, "truncated: " + std::to_string(file_bytes) + " bytes, less than the 8-byte header length");
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(map_err));
  map_ = map;
  map_bytes_ = file_bytes;
  try {
    const unsigned char* bytes = static_cast<const unsigned char*>(map);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | bytes[i];
    if (header_len > file_bytes - 8) {
      fail(path, "header length " + std::to_string(header_len) + " exceeds the file's " +
                     std::to_string(file_bytes - 8) + " bytes after the length field (truncated or corrupt)");
    }
    json header;
    try {
      header = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + header_len));
    } catch (const json::exception& e) {
      fail(path, std::string("corrupt JSON header: ") + e.what());
    }
    if (!header.is_object()) fail(path, "the JSON header is not an object");
    data_ = bytes + 8 + header_len;
    data_offset_ = 8 + header_len;
    uint64_t data_bytes = file_bytes - 8 - header_len;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object()) fail(path, "__metadata__ is not an object");
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          if (!m.value().is_string()) fail(path, "__metadata__ value '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      StTensorInfo t = parse_entry(path, it.key(), it.value());
      std::string where = "tensor '" + t.name + "': ";
      if (t.begin > t.end || t.end > data_bytes) {
        fail(path, where + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                       ") out of range of the " + std::to_string(data_bytes) + "-byte data section");
      }
      if (t.end - t.begin != t.numel() * st_dtype_size(t.dtype)) {
        fail(path, where + "data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape and dtype " +
                       st_dtype_name(t.dtype) + " need " + std::to_string(t.numel() * st_dtype_size(t.dtype)));
      }
      tensors_.push_back(std::move(t));
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const StTensorInfo& a, const StTensorInfo& b) { return a.begin < b.begin; });
    for (size_t i = 0; i < tensors_.size(); i++) {
      if (i > 0 && tensors_[i].begin < tensors_[i - 1].end) {
        fail(path, "tensor '" + tensors_[i].name + "' overlaps tensor '" + tensors_[i - 1].name + "'");
      }
      index_[tensors_[i].name] = i;
    }
  } catch (...) {
    ::munmap(map_, map_bytes_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::read_float(const std::string& name, float* out, size_t n) const {
  const StTensorInfo* t = find(name);
  if (t == nullptr) fail(path_, "no tensor named '" + name + "'");
  if (n != t->numel()) {
    fail(path_, "tensor '" + name + "' has " + std::to_string(t->numel()) + " elements, the caller expects " +
                    std::to_string(n));
  }
  read_float_range(name, 0, n, out);
}

void SafetensorsFile::read_float_range(const std::string& name, size_t begin, size_t n, float* out) const {
  const StTensorInfo* t = find(name);
  if (t == nullptr) fail(path_, "no tensor named '" + name + "'");
  if (begin > t->numel() || n > t->numel() - begin) {
    fail(path_, "tensor '" + name + "' has " + std::to_string(t->numel()) + " elements, the caller reads [" +
                    std::to_string(begin) + ", " + std::to_string(begin + n) + ")");
  }
  const unsigned char* src = data_ + t->begin + begin * st_dtype_size(t->dtype);
  // The data section need not be aligned for the element type, so halves are copied out in blocks.
  switch (t->dtype) {
    case StDtype::F32:
      std::memcpy(out, src, n * sizeof(float));
      break;
    case StDtype::F16:
    case StDtype::BF16: {
      constexpr size_t kBlock = 16384;
      std::vector<uint16_t> block(std::min(n, kBlock));
      for (size_t done = 0; done < n; done += kBlock) {
        size_t m = std::min(kBlock, n - done);
        std::memcpy(block.data(), src + done * 2, m * 2);
        if (t->dtype == StDtype::F16) {
          fp16_to_float_array(block.data(), out + done, m);
        } else {
          bf16_to_float_array(block.data(), out + done, m);
        }
      }
      break;
    }
  }
}

std::vector<float> SafetensorsFile::read_float(const std::string& name) const {
  const StTensorInfo* t = find(name);
  if (t == nullptr) fail(path_, "no tensor named '" + name + "'");
  std::vector<float> out(t->numel());
  read_float(name, out.data(), out.size());
  return out;
}

SafetensorsSet::SafetensorsSet(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::string file = path;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "model.safetensors.index.json")) {
      file = (fs::path(path) / "model.safetensors.index.json").string();
    } else if (fs::exists(fs::path(path) / "model.safetensors")) {
      file = (fs::path(path) / "model.safetensors").string();
    } else {
      fail(path, "directory has neither model.safetensors.index.json nor model.safetensors");
    }
  }
  bool is_index = file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    files_.push_back(std::make_unique<SafetensorsFile>(file));
    for (const StTensorInfo& t : files_[0]->tensors()) file_of_tensor_[t.name] = 0;
    return;
  }
  std::ifstream in(file);
  if (!in) fail(file, "cannot open the index");
  json index;
  try {
    index = json::parse(in);
  } catch (const json::exception& e) {
    fail(file, std::string("corrupt index JSON: ") + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    fail(file, "index has no weight_map object");
  }
  fs::path dir = fs::path(file).parent_path();
  std::map<std::string, size_t> file_index;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail(file, "weight_map entry '" + it.key() + "' is not a file name");
    std::string shard = it.value().get<std::string>();
    auto found = file_index.find(shard);
    if (found == file_index.end()) {
      files_.push_back(std::make_unique<SafetensorsFile>((dir / shard).string()));
      found = file_index.emplace(shard, files_.size() - 1).first;
    }
    if (files_[found->second]->find(it.key()) == nullptr) {
      fail(file, "weight_map puts tensor '" + it.key() + "' in " + shard + ", which does not hold it");
    }
    file_of_tensor_[it.key()] = found->second;
  }
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, f] : file_of_tensor_) out.push_back(name);
  return out;
}

bool SafetensorsSet::contains(const std::string& name) const { return file_of_tensor_.count(name) != 0; }

const SafetensorsFile& SafetensorsSet::file_of(const std::string& name) const {
  auto it = file_of_tensor_.find(name);
  if (it == file_of_tensor_.end()) fail(path_, "no tensor named '" + name + "'");
  return *files_[it->second];
}

const StTensorInfo& SafetensorsSet::info(const std::string& name) const { return *file_of(name).find(name); }

void SafetensorsSet::read_float(const std::string& name, float* out, size_t n) const {
  file_of(name).read_float(name, out, n);
}

std::vector<float> SafetensorsSet::read_float(const std::string& name) const { return file_of(name).read_float(name); }

void SafetensorsSet::read_float_range(const std::string& name, size_t begin, size_t n, float* out) const {
  file_of(name).read_float_range(name, begin, n, out);
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

namespace {

size_t spec_numel(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

void write_all(int fd, const std::string& path, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t w = ::write(fd, p, bytes);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(path, std::string("write failed: ") + std::strerror(errno));
    }
    p += w;
    bytes -= static_cast<size_t>(w);
  }
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<StTensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)) {
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const StTensorSpec& t : tensors_) {
    if (t.name == "__metadata__" || header.contains(t.name)) fail(path, "duplicate or reserved tensor name '" + t.name + "'");
    for (int64_t d : t.shape) {
      if (d < 0) fail(path, "tensor '" + t.name + "' has a negative dimension");
    }
    uint64_t bytes = spec_numel(t.shape) * st_dtype_size(t.dtype);
    header[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  data_bytes_ = offset;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path, std::string("cannot create: ") + std::strerror(errno));
  unsigned char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; i++) len[i] = static_cast<unsigned char>(n >> (8 * i));
  write_all(fd_, path_, len, 8);
  write_all(fd_, path_, text.data(), text.size());
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsWriter::write(const std::string& name, const float* data, size_t n) {
  if (fd_ < 0) fail(path_, "write of tensor '" + name + "' after close");
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    fail(path_, "tensor '" + name + "' written out of order (expected '" +
                    (next_ < tensors_.size() ? tensors_[next_].name : std::string("<none>")) + "')");
  }
  const StTensorSpec& t = tensors_[next_];
  if (n != spec_numel(t.shape)) {
    fail(path_, "tensor '" + name + "' given " + std::to_string(n) + " elements, its shape has " +
                    std::to_string(spec_numel(t.shape)));
  }
  if (t.dtype == StDtype::F32) {
    write_all(fd_, path_, data, n * sizeof(float));
  } else {
    constexpr size_t kBlock = 16384;
    std::vector<uint16_t> block(std::min(n, kBlock));
    for (size_t done = 0; done < n; done += kBlock) {
      size_t m = std::min(kBlock, n - done);
      if (t.dtype == StDtype::F16) {
        float_to_fp16_array(data + done, block.data(), m);
      } else {
        float_to_bf16_array(data + done, block.data(), m);
      }
      write_all(fd_, path_, block.data(), m * 2);
    }
  }
  next_++;
}

void SafetensorsWriter::copy_from_file(int in_fd, const std::string& in_path, uint64_t offset, uint64_t bytes) {
  if (fd_ < 0) fail(path_, "copy after close");
  if (next_ != 0 || raw_written_ + bytes > data_bytes_)
    fail(path_, "copy of " + std::to_string(bytes) + " bytes past the " + std::to_string(data_bytes_) +
                    "-byte data section (or mixed with per-tensor writes)");
  off_t from = static_cast<off_t>(offset);
  while (bytes > 0) {
    const ssize_t n = ::sendfile(fd_, in_fd, &from, static_cast<size_t>(std::min<uint64_t>(bytes, 1u << 30)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail(path_, "copy from '" + in_path + "' at byte " + std::to_string(from) + " failed: " +
                      (n == 0 ? std::string("unexpected end of file (truncated?)") : std::strerror(errno)));
    bytes -= static_cast<uint64_t>(n);
    raw_written_ += static_cast<uint64_t>(n);
  }
}

void SafetensorsWriter::start_writeback() {
  if (fd_ >= 0) ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);  // advisory: errors surface in close()'s fsync
}

void SafetensorsWriter::close() {
  if (fd_ < 0) return;
  if (raw_written_ > 0 && raw_written_ != data_bytes_) {
    ::close(fd_);
    fd_ = -1;
    fail(path_, "closed after " + std::to_string(raw_written_) + " of " + std::to_string(data_bytes_) +
                    " data bytes were written");
  }
  if (raw_written_ == 0 && next_ != tensors_.size()) {
    ::close(fd_);
    fd_ = -1;
    fail(path_, "closed after " + std::to_string(next_) + " of " + std::to_string(tensors_.size()) +
                    " tensors were written");
  }
  // Durable before it is called written: checkpoints rename files into place only after this returns.
  if (::fsync(fd_) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    fail(path_, std::string("fsync failed: ") + std::strerror(err));
  }
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(path_, std::string("close failed: ") + std::strerror(errno));
}

void write_safetensors(const std::string& path, const std::vector<StTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<StTensorSpec> specs;
  for (const StTensorRef& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  SafetensorsWriter writer(path, std::move(specs), metadata);
  for (const StTensorRef& t : tensors) writer.write(t.name, t.data, spec_numel(t.shape));
  writer.close();
}

std::vector<std::string> write_safetensors_sharded(const std::string& dir, const std::vector<StTensorRef>& tensors,
                                                   uint64_t max_shard_bytes,
                                                   const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  if (max_shard_bytes == 0) throw ConfigError("safetensors: max_shard_size must be positive");
  std::vector<std::vector<StTensorRef>> groups;
  uint64_t group_bytes = 0, total_bytes = 0;
  for (const StTensorRef& t : tensors) {
    uint64_t bytes = spec_numel(t.shape) * st_dtype_size(t.dtype);
    if (groups.empty() || (group_bytes + bytes > max_shard_bytes && group_bytes > 0)) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(t);
    group_bytes += bytes;
    total_bytes += bytes;
  }
  std::vector<std::string> written;
  if (groups.size() <= 1) {
    std::string path = (fs::path(dir) / "model.safetensors").string();
    write_safetensors(path, groups.empty() ? std::vector<StTensorRef>{} : groups[0], metadata);
    written.push_back(path);
    return written;
  }
  json weight_map = json::object();
  for (size_t i = 0; i < groups.size(); i++) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, groups.size());
    std::string path = (fs::path(dir) / name).string();
    write_safetensors(path, groups[i], metadata);
    for (const StTensorRef& t : groups[i]) weight_map[t.name] = name;
    written.push_back(path);
  }
  json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  std::ofstream out(index_path);
  out << index.dump(2) << "\n";
  if (!out) fail(index_path, "cannot write the index");
  written.push_back(index_path);
  return written;
}

}  // namespace zt
