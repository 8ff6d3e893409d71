#include "engine/runtime/progress_bar.h"

#include <cstdio>

namespace zt {

ProgressBar::ProgressBar(int64_t total, bool enabled)
    : total_(total > 0 ? total : 1), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  const int width = 30;
  double frac = static_cast<double>(done) / static_cast<double>(total_);
  int filled = static_cast<int>(frac * width);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::printf("\r[%s] %lld/%lld %s eta %02d:%02d   ", bar.c_str(), static_cast<long long>(done),
              static_cast<long long>(total_), status.c_str(), static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  std::fflush(stdout);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) {
    std::printf("\n");
    std::fflush(stdout);
    drawn_ = false;
  }
}

}  // namespace zt
