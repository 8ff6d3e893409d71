// Swap files: O_DIRECT when the filesystem takes it, removed at close, at exit, or by remove_live_swap_files().
#include "offload/io_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include "engine/base/error.h"
#include "engine/base/logging.h"

namespace zt::offload {
namespace {

std::mutex& registry_mutex() {
  static std::mutex mu;
  return mu;
}
std::set<std::string>& live_files() {
  static std::set<std::string> files;
  return files;
}

// The live paths again, where a signal handler may read them: fixed slots, no allocation, no locks. A worker that
// the launcher stops with SIGTERM (because another rank failed) removes its swap files this way.
constexpr int kSignalSlots = 64;
constexpr int kSlotFree = 0, kSlotWriting = 1, kSlotReady = 2;
struct SignalSlot {
  std::atomic<int> state{kSlotFree};
  char path[4096];
};
SignalSlot g_signal_slots[kSignalSlots];

void unlink_on_signal(int sig) {
  for (SignalSlot& s : g_signal_slots)
    if (s.state.load() == kSlotReady) ::unlink(s.path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Only where nobody handles the signal already (a worker process; not the launcher or a test harness).
void install_signal_cleanup() {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = unlink_on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

void register_file(const std::string& path) {
  static std::once_flag at_exit_once;
  std::call_once(at_exit_once, [] {
    std::atexit(remove_live_swap_files);
    install_signal_cleanup();
  });
  std::lock_guard<std::mutex> lock(registry_mutex());
  live_files().insert(path);
  if (path.size() >= sizeof(SignalSlot::path)) return;
  for (SignalSlot& s : g_signal_slots) {
    int expected = kSlotFree;
    if (!s.state.compare_exchange_strong(expected, kSlotWriting)) continue;
    std::memcpy(s.path, path.c_str(), path.size() + 1);
    s.state.store(kSlotReady);
    return;
  }
}

void unregister_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  live_files().erase(path);
  for (SignalSlot& s : g_signal_slots)
    if (s.state.load() == kSlotReady && path == s.path) s.state.store(kSlotFree);
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void remove_live_swap_files() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (const std::string& p : live_files()) ::unlink(p.c_str());
  live_files().clear();
  for (SignalSlot& s : g_signal_slots) s.state.store(kSlotFree);
}

IoFile::IoFile(std::string path, bool try_direct, bool remove_on_close)
    : path_(std::move(path)), remove_on_close_(remove_on_close) {
  int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
  int err = 0;
  bool buffered = !try_direct;
  if (try_direct) {
    fd_ = ::open(path_.c_str(), flags | O_DIRECT, 0600);
    err = errno;
    if (fd_ >= 0) {
      direct_ = true;
    } else if (err == EINVAL) {
      buffered = true;
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        spdlog::warn("aio: the filesystem of {} refuses O_DIRECT; swap files use buffered I/O (page cache)", path_);
      }
    }
  }
  if (buffered) {
    fd_ = ::open(path_.c_str(), flags, 0600);
    err = errno;
  }
  if (fd_ < 0) {
    std::string dir = parent_dir(path_);
    struct stat st {};
    std::string why = std::strerror(err);
    if (err == ENOENT && ::stat(dir.c_str(), &st) != 0) why = "directory " + dir + " does not exist";
    if (err == EROFS) why = "directory " + dir + " is on a read-only filesystem";
    if (err == EACCES) why = "directory " + dir + " is not writable (" + std::strerror(err) + ")";
    throw RuntimeError("aio: cannot create swap file " + path_ + ": " + why);
  }
  if (remove_on_close_) register_file(path_);
}

IoFile IoFile::create_in(const std::string& dir, const std::string& tag, bool try_direct) {
  struct stat st {};
  if (dir.empty()) throw RuntimeError("aio: nvme_path is empty; set offload_*.nvme_path to a directory");
  if (::stat(dir.c_str(), &st) != 0) {
    throw RuntimeError("aio: nvme_path " + dir + " does not exist (" + std::strerror(errno) + ")");
  }
  if (!S_ISDIR(st.st_mode)) throw RuntimeError("aio: nvme_path " + dir + " is not a directory");
  static std::atomic<uint64_t> serial{0};
  std::string name = "zt_swap_" + std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(serial++) + ".bin";
  return IoFile(dir + (dir.back() == '/' ? "" : "/") + name, try_direct, true);
}

IoFile::IoFile(IoFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), direct_(other.direct_), remove_on_close_(other.remove_on_close_) {
  other.fd_ = -1;
  other.remove_on_close_ = false;
}

IoFile::~IoFile() { close(); }

void IoFile::close() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  if (remove_on_close_) {
    ::unlink(path_.c_str());
    unregister_file(path_);
  }
}

void IoFile::check_not_deleted(const char* op) const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    throw RuntimeError(std::string("aio ") + op + ": fstat of swap file " + path_ + " failed: " + std::strerror(errno));
  }
  if (st.st_nlink == 0) {
    throw RuntimeError(std::string("aio ") + op + ": swap file " + path_ +
                       " was deleted while in use (another process or a cleanup removed it)");
  }
}

}  // namespace zt::offload
