#pragma once
// A one-line progress bar with ETA, drawn by rank 0 on stdout only when it is a terminal (logs stay clean in files).
#include <chrono>
#include <cstdint>
#include <string>

namespace zt {

class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled);
  ~ProgressBar();
  void update(int64_t done, const std::string& status);
  void finish();

 private:
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace zt
