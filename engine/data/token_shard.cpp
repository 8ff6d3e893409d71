// llm.c token shards: a 256-int32 header (magic 20240520, version 1, token count) then uint16 tokens, mmapped.
#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/base/error.h"
#include "engine/data/data_loader.h"

namespace zt {

namespace {
constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr size_t kHeaderBytes = 256 * sizeof(int32_t);
}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError("token shard " + path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw RuntimeError("token shard " + path + ": cannot stat: " + std::strerror(err));
  }
  size_t file_bytes = static_cast<size_t>(st.st_size);
  if (file_bytes < kHeaderBytes) {
    ::close(fd);
    throw RuntimeError("token shard " + path + ": truncated header (" + std::to_string(file_bytes) +
                       " bytes, the header alone is " + std::to_string(kHeaderBytes) + ")");
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw RuntimeError("token shard " + path + ": mmap failed: " + std::strerror(map_err));
  map_ = map;
  map_bytes_ = file_bytes;
  try {
    int32_t header[3];
    std::memcpy(header, map, sizeof(header));
    if (header[0] != kShardMagic) {
      throw RuntimeError("token shard " + path + ": bad magic " + std::to_string(header[0]) + " (expected " +
                         std::to_string(kShardMagic) + ")");
    }
    if (header[1] != kShardVersion) {
      throw RuntimeError("token shard " + path + ": unsupported version " + std::to_string(header[1]) +
                         " (expected " + std::to_string(kShardVersion) + ")");
    }
    if (header[2] <= 0) {
      throw RuntimeError("token shard " + path + ": empty shard (header token count " + std::to_string(header[2]) +
                         ")");
    }
    n_ = static_cast<size_t>(header[2]);
    size_t expected = kHeaderBytes + n_ * sizeof(uint16_t);
    if (file_bytes < expected) {
      throw RuntimeError("token shard " + path + ": truncated: header says " + std::to_string(n_) + " tokens (" +
                         std::to_string(expected) + " bytes) but the file has " + std::to_string(file_bytes) +
                         " bytes");
    }
    if (file_bytes > expected) {
      throw RuntimeError("token shard " + path + ": " + std::to_string(file_bytes - expected) +
                         " trailing bytes after the " + std::to_string(n_) + " tokens the header declares");
    }
    tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(map) + kHeaderBytes);
  } catch (...) {
    ::munmap(map_, map_bytes_);
    throw;
  }
}

TokenShard::~TokenShard() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns) {
  std::vector<std::string> paths;
  for (const std::string& pattern : patterns) {
    glob_t g{};
    int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
      ::globfree(&g);
      throw RuntimeError("data: pattern '" + pattern + "' matches no file");
    }
    if (rc != 0) {
      ::globfree(&g);
      throw RuntimeError("data: cannot expand pattern '" + pattern + "' (glob error " + std::to_string(rc) + ")");
    }
    for (size_t i = 0; i < g.gl_pathc; i++) paths.emplace_back(g.gl_pathv[i]);
    ::globfree(&g);
  }
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return paths;
}

}  // namespace zt
