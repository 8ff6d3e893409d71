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
  // More sets than sub-groups would only cost memory.
  const size_t groups = std::max<size_t>(1, (n_ + group_ - 1) / group_);
  const size_t count = std::min(static_cast<size_t>(std::max(cfg.zero.offload_optimizer.buffer_count, 2)),
                                std::max<size_t>(groups, 2));
  pool_ = std::make_unique<offload::PinnedBufferPool>(2 * count, group_ * sizeof(float),
                                                      cfg.zero.offload_optimizer.pin_memory);
  sets_.resize(count);
  for (BufferSet& set : sets_) {
    set.m = static_cast<float*>(pool_->acquire());
    set.v = static_cast<float*>(pool_->acquire());
  }
  // Adam starts from zeros.
  float* zeros = sets_[0].m;
  std::memset(zeros, 0, group_ * sizeof(float));
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    const int64_t off = static_cast<int64_t>(at * sizeof(float));
    offload::IoHandle a = aio_->write(m_file_, zeros, len * sizeof(float), off);
    offload::IoHandle b = aio_->write(v_file_, zeros, len * sizeof(float), off);
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
  const size_t groups = (n_ + group_ - 1) / group_, k = sets_.size();
  // Reads run this many sub-groups ahead of the update; with k >= 3 one set is left for the previous write-back.
  const size_t ahead = std::max<size_t>(1, k - 2);
  auto bytes_of = [&](size_t g) { return std::min(group_, n_ - g * group_) * sizeof(float); };
  auto offset_of = [&](size_t g) { return static_cast<int64_t>(g * group_ * sizeof(float)); };
  events_.clear();
  size_t next_read = 0;
  for (size_t g = 0; g < groups; ++g) {
    for (; next_read < groups && next_read <= g + ahead; ++next_read) {
      BufferSet& set = sets_[next_read % k];
      // The set's previous sub-group must be written back before it is read into again.
      wait(set.write_m);
      wait(set.write_v);
      set.read_m = aio_->read(m_file_, set.m, bytes_of(next_read), offset_of(next_read));
      set.read_v = aio_->read(v_file_, set.v, bytes_of(next_read), offset_of(next_read));
      events_.push_back({PipelineEvent::ReadIssued, next_read, next_read % k});
    }
    BufferSet& set = sets_[g % k];
    wait(set.read_m);
    wait(set.read_v);
    events_.push_back({PipelineEvent::UpdateBegin, g, g % k});
    const size_t begin = g * group_, len = bytes_of(g) / sizeof(float);
    offload::cpu_adam_step(params + begin, grads + begin, set.m, set.v, len, hyper, step,
                           slice_ranges(ranges, begin, len));
    set.write_m = aio_->write(m_file_, set.m, len * sizeof(float), offset_of(g));
    set.write_v = aio_->write(v_file_, set.v, len * sizeof(float), offset_of(g));
    events_.push_back({PipelineEvent::WriteIssued, g, g % k});
  }
  for (BufferSet& set : sets_) {
    wait(set.write_m);
    wait(set.write_v);
  }
}

void NvmeOptimizerState::read_state(const std::string& name, float* out) {
  offload::IoFile& f = file(name);
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    offload::IoHandle h = aio_->read(f, sets_[0].m, len * sizeof(float), static_cast<int64_t>(at * sizeof(float)));
    aio_->wait(h);
    std::memcpy(out + at, sets_[0].m, len * sizeof(float));
  }
}

void NvmeOptimizerState::write_state(const std::string& name, const float* in) {
  offload::IoFile& f = file(name);
  for (size_t at = 0; at < n_; at += group_) {
    const size_t len = std::min(group_, n_ - at);
    std::memcpy(sets_[0].m, in + at, len * sizeof(float));
    offload::IoHandle h = aio_->write(f, sets_[0].m, len * sizeof(float), static_cast<int64_t>(at * sizeof(float)));
    aio_->wait(h);
  }
}

}  // namespace zt
