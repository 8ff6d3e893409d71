#pragma once
// A swap file for NVMe offload: opened with O_DIRECT where the filesystem allows it, removed when it is closed.
#include <cstddef>
#include <cstdint>
#include <string>

namespace zt::offload {

// O_DIRECT needs the buffer address, the file offset and the length aligned to the logical block size; 4096 covers
// every NVMe and 512e disk. The AIO layer requires aligned buffers and offsets and pads only the length.
inline constexpr size_t kIoAlignment = 4096;

inline constexpr size_t io_padded_size(size_t bytes) {
  return (bytes + kIoAlignment - 1) / kIoAlignment * kIoAlignment;
}

class IoFile {
 public:
  // Creates (truncating) `path` for reading and writing. try_direct=false opens buffered (tests, benchmarks of the
  // page-cache path). When the filesystem refuses O_DIRECT (tmpfs on older kernels: EINVAL) the file is opened
  // buffered and one warning per process is logged. A missing directory, a read-only or unwritable directory
  // throw RuntimeError naming the path. remove_on_close: unlink at destruction.
  explicit IoFile(std::string path, bool try_direct = true, bool remove_on_close = true);
  // Creates a uniquely named swap file "zt_swap_<pid>_<tag>_<serial>.bin" in `dir` (the nvme_path), after checking
  // that `dir` exists and is a directory.
  static IoFile create_in(const std::string& dir, const std::string& tag, bool try_direct = true);
  ~IoFile();
  IoFile(IoFile&& other) noexcept;
  IoFile& operator=(IoFile&&) = delete;
  IoFile(const IoFile&) = delete;
  IoFile& operator=(const IoFile&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool direct() const { return direct_; }
  // Throws RuntimeError naming the file and `op` when the file was unlinked behind our back (st_nlink == 0): reads
  // of an unlinked open file still succeed on Linux, but whatever removed it meant the run to stop.
  void check_not_deleted(const char* op) const;
  // Closes and (if remove_on_close) unlinks now; the destructor does nothing afterwards.
  void close();

 private:
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  bool remove_on_close_ = true;
};

// Unlinks every swap file this process still has open. Registered with atexit() on the first IoFile, so that
// exit() without unwinding (a library calling exit, the end of main with leaked objects) still removes them. It is
// not async-signal-safe: a runtime that wants SIGTERM/SIGINT to clean up calls it from its normal shutdown path after
// the signal is noticed. SIGKILL or a crash leaves the files ("zt_swap_<pid>_*" in nvme_path, safe to delete).
void remove_live_swap_files();

}  // namespace zt::offload
