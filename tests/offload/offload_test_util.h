#pragma once
// Helpers shared by the offload tests: a scratch directory on the real disk (O_DIRECT works there, not on tmpfs
// with older kernels), aligned buffers, and a tmpfs mount for the full-disk and read-only cases.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

namespace zt::offload::testing {

struct AlignedFree {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<char, AlignedFree>;

inline AlignedBuffer aligned_buffer(size_t bytes) {
  size_t padded = (bytes + 4095) / 4096 * 4096;
  if (padded == 0) padded = 4096;
  return AlignedBuffer(static_cast<char*>(std::aligned_alloc(4096, padded)));
}

// build/offload_test_tmp/<pid>_<name>, removed at destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    path_ = std::string(ZT_BINARY_DIR) + "/offload_test_tmp/" + std::to_string(::getpid()) + "_" + name;
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A tmpfs of `size` mounted on a fresh directory (root only); mounted() is false where mounting is not allowed.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& name, const std::string& size) : dir_(name) {
    mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool remount_read_only() {
    return ::mount(nullptr, dir_.path().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }
  const std::string& path() const { return dir_.path(); }

 private:
  ScratchDir dir_;
  bool mounted_ = false;
};

}  // namespace zt::offload::testing
