#include "engine/zero/nvme_optimizer_state.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/base/error.h"

namespace zt {

namespace {

constexpr offload::IoHandle kNone = 0;
constexpr size_t kAlignFloats = offload::kIoAlignment / sizeof(float);
const char* const kPartNames[] = {"master", "exp_avg", "exp_avg_sq"};

// The decay ranges of [begin, begin + len), shifted to start at 0.
std::vector<DecayRange> slice_ranges(const std::vector<DecayRange>& ranges, size_t begin, size_t len) {
  std::vector<DecayRange> out;
  for (const DecayRange& r : ranges) {
    const size_t b = std::max(r.begin, begin), e = std::min(r.end, begin + len);
    if (b < e) out.push_back({b - begin, e - begin, r.decay});
  }
  return out;
}

offload::IoFile swap_file(const Config& cfg, int rank, const char* part) {
  return offload::IoFile::create_in(cfg.zero.offload_optimizer.nvme_path,
                                    "rank" + std::to_string(rank) + "_" + part);
}

}  // namespace

NvmeOptimizerState::NvmeOptimizerState(const Config& cfg, size_t n, int rank, const float* master)
    : n_(n),
      group_(std::max<size_t>(kAlignFloats, static_cast<size_t>(std::max<int64_t>(cfg.zero.sub_group_size, 1)) /
                                                kAlignFloats * kAlignFloats)),
      aio_(offload::make_async_io(cfg.aio)),
      files_{swap_file(cfg, rank, kPartNames[Master]), swap_file(cfg, rank, kPartNames[ExpAvg]),
             swap_file(cfg, rank, kPartNames[ExpAvgSq])} {
  group_ = std::min(group_, (n_ + kAlignFloats - 1) / kAlignFloats * kAlignFloats);
  group_ = std::max(group_, kAlignFloats);
  // More sets than sub-groups would only cost memory.
  const size_t count = std::min(static_cast<size_t>(std::max(cfg.zero.offload_optimizer.buffer_count, 2)),
                                std::max<size_t>(groups(), 2));
  pool_ = std::make_unique<offload::PinnedBufferPool>(kParts * count, group_ * sizeof(float),
                                                      cfg.zero.offload_optimizer.pin_memory);
  sets_.resize(count);
  for (BufferSet& set : sets_)
    for (float*& b : set.buf) b = static_cast<float*>(pool_->acquire());
  write_file(Master, master);
  write_file(ExpAvg, nullptr);  // Adam starts from zeros
  write_file(ExpAvgSq, nullptr);
}

NvmeOptimizerState::~NvmeOptimizerState() {
  try {
    aio_->wait_all();
  } catch (...) {
  }
}

int NvmeOptimizerState::part(const std::string& name) const {
  for (int p = 0; p < kParts; ++p)
    if (name == kPartNames[p]) return p;
  throw RuntimeError("NVMe optimizer state has no buffer '" + name + "'");
}

const std::string& NvmeOptimizerState::path(const std::string& name) const { return files_[part(name)].path(); }

void NvmeOptimizerState::wait(offload::IoHandle& h) {
  if (h == kNone) return;
  const auto t0 = std::chrono::steady_clock::now();
  const offload::IoHandle pending = h;
  h = kNone;  // waited on once, also when the wait throws
  aio_->wait(pending);
  io_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void NvmeOptimizerState::step(const float* grads, const std::vector<DecayRange>& ranges,
                              const offload::CpuAdamHyper& hyper, int64_t step, const MasterSink& updated,
                              const GroupReady& ready) {
  const size_t count = groups(), k = sets_.size();
  // Reads run this many sub-groups ahead of the update; with k >= 3 one set is left for the previous write-back.
  const size_t ahead = std::max<size_t>(1, k - 2);
  events_.clear();
  size_t next_read = 0;
  for (size_t g = 0; g < count; ++g) {
    for (; next_read < count && next_read <= g + ahead; ++next_read) {
      BufferSet& set = sets_[next_read % k];
      const size_t len = len_of(next_read);
      for (int p = 0; p < kParts; ++p) {
        // The set's previous sub-group must be written back before it is read into again.
        wait(set.write[p]);
        set.read[p] = aio_->read(files_[p], set.buf[p], len * sizeof(float), offset_of(next_read, group_));
      }
      events_.push_back({PipelineEvent::ReadIssued, next_read, next_read % k});
    }
    BufferSet& set = sets_[g % k];
    for (offload::IoHandle& h : set.read) wait(h);
    const size_t begin = g * group_, len = len_of(g);
    if (ready) ready(begin, len);
    events_.push_back({PipelineEvent::UpdateBegin, g, g % k});
    offload::cpu_adam_step(set.buf[Master], grads + begin, set.buf[ExpAvg], set.buf[ExpAvgSq], len, hyper, step,
                           slice_ranges(ranges, begin, len));
    for (int p = 0; p < kParts; ++p)
      set.write[p] = aio_->write(files_[p], set.buf[p], len * sizeof(float), offset_of(g, group_));
    events_.push_back({PipelineEvent::WriteIssued, g, g % k});
    // The write-back only reads the buffer too, so the sink runs while it is in flight.
    updated(begin, len, set.buf[Master]);
  }
  for (BufferSet& set : sets_)
    for (offload::IoHandle& h : set.write) wait(h);
}

void NvmeOptimizerState::read_master(const MasterSink& sink) {
  const size_t count = groups(), k = sets_.size();
  auto issue = [&](size_t g) {
    BufferSet& set = sets_[g % k];
    set.read[Master] = aio_->read(files_[Master], set.buf[Master], len_of(g) * sizeof(float), offset_of(g, group_));
  };
  if (count > 0) issue(0);
  for (size_t g = 0; g < count; ++g) {
    if (g + 1 < count) issue(g + 1);
    BufferSet& set = sets_[g % k];
    wait(set.read[Master]);
    sink(g * group_, len_of(g), set.buf[Master]);
  }
}

void NvmeOptimizerState::read_state(const std::string& name, float* out) {
  const int p = part(name);
  for (size_t g = 0; g < groups(); ++g) {
    float* buf = sets_[0].buf[p];
    offload::IoHandle h = aio_->read(files_[p], buf, len_of(g) * sizeof(float), offset_of(g, group_));
    aio_->wait(h);
    std::memcpy(out + g * group_, buf, len_of(g) * sizeof(float));
  }
}

void NvmeOptimizerState::write_state(const std::string& name, const float* in) { write_file(part(name), in); }

void NvmeOptimizerState::write_file(int p, const float* src) {
  const size_t k = sets_.size();
  for (size_t g = 0; g < groups(); ++g) {
    BufferSet& set = sets_[g % k];
    wait(set.write[p]);  // the set's previous sub-group has left its buffer
    if (src)
      std::memcpy(set.buf[p], src + g * group_, len_of(g) * sizeof(float));
    else
      std::memset(set.buf[p], 0, len_of(g) * sizeof(float));
    set.write[p] = aio_->write(files_[p], set.buf[p], len_of(g) * sizeof(float), offset_of(g, group_));
  }
  for (BufferSet& set : sets_) wait(set.write[p]);
}

}  // namespace zt
