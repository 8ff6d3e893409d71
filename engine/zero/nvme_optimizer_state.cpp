#include "engine/zero/nvme_optimizer_state.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/base/error.h"

namespace zt {

namespace {

constexpr offload::IoHandle kNone = 0;
constexpr size_t kAlignFloats = offload::kIoAlignment / sizeof(float);

// The decay ranges of [begin, begin + len), shifted to start at 0.
std::vector<DecayRange> slice_ranges(const std::vector<DecayRange>& ranges, size_t begin, size_t len) {
  std::vector<DecayRange> out;
  for (const DecayRange& r : ranges) {
    const size_t b = std::max(r.begin, begin), e = std::min(r.end, begin + len);
    if (b < e) out.push_back({b - begin, e - begin, r.decay});
  }
  return out;
}

}  // namespace

NvmeOptimizerState::NvmeOptimizerState(const Config& cfg, size_t n, int rank)
    : n_(n),
      group_(std::max<size_t>(kAlignFloats, static_cast<size_t>(std::max<int64_t>(cfg.zero.sub_group_size, 1)) /
                                                kAlignFloats * kAlignFloats)),
      aio_(offload::make_async_io(cfg.aio)),
      m_file_(offload::IoFile::create_in(cfg.zero.offload_optimizer.nvme_path,
                                         "rank" + std::to_string(rank) + "_exp_avg")),
      v_file_(offload::IoFile::create_in(cfg.zero.offload_optimizer.nvme_path,
                                         "rank" + std::to_string(rank) + "_exp_avg_sq")) {
  group_ = std::min(group_, (n_ + kAlignFloats - 1) / kAlignFloats * kAlignFloats);
  group_ = std::max(group_, kAlignFloats);
  pool_ = std::make_unique<offload::PinnedBufferPool>(4, group_ * sizeof(float),
                                                      cfg.zero.offload_optimizer.pin_memory);
  for (int s = 0; s < 2; ++s) {
    m_buf_[s] = static_cast<float*>(pool_->acquire());
    v_buf_[s] = static_cast<float*>(pool_->acquire());
  }
  // Adam starts from zeros.
  std::memset(m_buf_[0], 0, group_ * sizeof(float));
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    const int64_t off = static_cast<int64_t>(at * sizeof(float));
    offload::IoHandle a = aio_->write(m_file_, m_buf_[0], len * sizeof(float), off);
    offload::IoHandle b = aio_->write(v_file_, m_buf_[0], len * sizeof(float), off);
    aio_->wait(a);
    aio_->wait(b);
  }
}

NvmeOptimizerState::~NvmeOptimizerState() {
  try {
    aio_->wait_all();
  } catch (...) {
  }
}

offload::IoFile& NvmeOptimizerState::file(const std::string& name) {
  if (name == "exp_avg") return m_file_;
  if (name == "exp_avg_sq") return v_file_;
  throw RuntimeError("NVMe optimizer state has no buffer '" + name + "'");
}

void NvmeOptimizerState::wait(offload::IoHandle& h) {
  if (h == kNone) return;
  const auto t0 = std::chrono::steady_clock::now();
  aio_->wait(h);
  io_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  h = kNone;
}

void NvmeOptimizerState::step(float* params, const float* grads, const std::vector<DecayRange>& ranges,
                              const offload::CpuAdamHyper& hyper, int64_t step) {
  const size_t groups = (n_ + group_ - 1) / group_;
  offload::IoHandle rm[2] = {kNone, kNone}, rv[2] = {kNone, kNone}, wm[2] = {kNone, kNone}, wv[2] = {kNone, kNone};
  auto bytes_of = [&](size_t g) { return std::min(group_, n_ - g * group_) * sizeof(float); };
  auto offset_of = [&](size_t g) { return static_cast<int64_t>(g * group_ * sizeof(float)); };
  auto issue_reads = [&](size_t g, int s) {
    rm[s] = aio_->read(m_file_, m_buf_[s], bytes_of(g), offset_of(g));
    rv[s] = aio_->read(v_file_, v_buf_[s], bytes_of(g), offset_of(g));
  };
  if (groups > 0) issue_reads(0, 0);
  for (size_t g = 0; g < groups; ++g) {
    const int s = static_cast<int>(g % 2), t = 1 - s;
    wait(rm[s]);
    wait(rv[s]);
    if (g + 1 < groups) {
      // The other set's write-back must land before its buffers are read into again.
      wait(wm[t]);
      wait(wv[t]);
      issue_reads(g + 1, t);
    }
    const size_t begin = g * group_, len = bytes_of(g) / sizeof(float);
    offload::cpu_adam_step(params + begin, grads + begin, m_buf_[s], v_buf_[s], len, hyper, step,
                           slice_ranges(ranges, begin, len));
    wm[s] = aio_->write(m_file_, m_buf_[s], len * sizeof(float), offset_of(g));
    wv[s] = aio_->write(v_file_, v_buf_[s], len * sizeof(float), offset_of(g));
  }
  for (int s = 0; s < 2; ++s) {
    wait(wm[s]);
    wait(wv[s]);
  }
}

void NvmeOptimizerState::read_state(const std::string& name, float* out) {
  offload::IoFile& f = file(name);
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    offload::IoHandle h = aio_->read(f, m_buf_[0], len * sizeof(float), static_cast<int64_t>(at * sizeof(float)));
    aio_->wait(h);
    std::memcpy(out + at, m_buf_[0], len * sizeof(float));
  }
}

void NvmeOptimizerState::write_state(const std::string& name, const float* in) {
  offload::IoFile& f = file(name);
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    std::memcpy(m_buf_[0], in + at, len * sizeof(float));
    offload::IoHandle h = aio_->write(f, m_buf_[0], len * sizeof(float), static_cast<int64_t>(at * sizeof(float)));
    aio_->wait(h);
  }
}

}  // namespace zt
