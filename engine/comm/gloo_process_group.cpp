// The Gloo backend: host buffers over TCP. Every collective runs on one worker thread per group, in issue order, so
// the async variants return at once and the gloo context is never used by two threads.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <thread>

#include "engine/base/error.h"
#include "engine/comm/arrival_board.h"
#include "kernels/cpu/half_convert.h"
#include "engine/comm/process_group.h"
#include "engine/comm/store.h"

namespace zt {
namespace {

using std::chrono::milliseconds;

// Gloo's Store interface over ours.
class GlooStoreAdapter : public gloo::rendezvous::Store {
 public:
  explicit GlooStoreAdapter(std::shared_ptr<zt::Store> s) : s_(std::move(s)) {}
  void set(const std::string& key, const std::vector<char>& data) override { s_->set(key, data); }
  std::vector<char> get(const std::string& key) override { return s_->get(key); }
  void wait(const std::vector<std::string>& keys) override { s_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override { s_->wait(keys, timeout); }

 private:
  std::shared_ptr<zt::Store> s_;
};

// The address of the local interface that routes to host (no packet is sent: connect() on UDP only picks a route).
std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (host.empty() || ::getaddrinfo(host.c_str(), "9", &hints, &res) != 0) return "127.0.0.1";
  std::string out = "127.0.0.1";
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in me{};
    socklen_t len = sizeof(me);
    char buf[INET_ADDRSTRLEN];
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0 &&
        ::inet_ntop(AF_INET, &me.sin_addr, buf, sizeof(buf)))
      out = buf;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return out;
}

// c = a (op) b over n elements of one dtype; 16-bit types reduce through float, one rounding per step.
template <typename Load, typename Storef>
void reduce_16(void* c, const void* a, const void* b, size_t n, ReduceOp op, Load load, Storef store) {
  auto* pc = static_cast<uint16_t*>(c);
  auto* pa = static_cast<const uint16_t*>(a);
  auto* pb = static_cast<const uint16_t*>(b);
  if (op == ReduceOp::Max)
    for (size_t i = 0; i < n; ++i) pc[i] = store(std::max(load(pa[i]), load(pb[i])));
  else
    for (size_t i = 0; i < n; ++i) pc[i] = store(load(pa[i]) + load(pb[i]));
}

void reduce_into(void* c, const void* a, const void* b, size_t n, DType t, ReduceOp op) {
  switch (t) {
    case DType::F32: {
      auto* pc = static_cast<float*>(c);
      auto* pa = static_cast<const float*>(a);
      auto* pb = static_cast<const float*>(b);
      if (op == ReduceOp::Max)
        for (size_t i = 0; i < n; ++i) pc[i] = std::max(pa[i], pb[i]);
      else
        for (size_t i = 0; i < n; ++i) pc[i] = pa[i] + pb[i];
      break;
    }
    case DType::BF16: reduce_16(c, a, b, n, op, bf16_to_float, float_to_bf16); break;
    case DType::F16: reduce_16(c, a, b, n, op, fp16_to_float, float_to_fp16); break;
  }
}

void scale(void* buf, size_t n, DType t, float s) {
  if (t == DType::F32) {
    auto* p = static_cast<float*>(buf);
    for (size_t i = 0; i < n; ++i) p[i] *= s;
  } else {
    auto* p = static_cast<uint16_t*>(buf);
    bool bf = t == DType::BF16;
    for (size_t i = 0; i < n; ++i) p[i] = bf ? float_to_bf16(bf16_to_float(p[i]) * s) : float_to_fp16(fp16_to_float(p[i]) * s);
  }
}

class GlooWork : public Work {
 public:
  explicit GlooWork(std::string what) : what_(std::move(what)) {}
  void wait() override {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> g(mu_);
    return done_;
  }
  void finish(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
      error_ = e;
    }
    cv_.notify_all();
  }
  const std::string& what() const { return what_; }

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

class GlooProcessGroup : public ProcessGroup {
 public:
  static constexpr size_t kSegmentBytes = size_t{1} << 20;

  GlooProcessGroup(int rank, std::vector<int> global_ranks, int global_rank, std::shared_ptr<Store> store,
                   std::string prefix, double timeout_s, std::shared_ptr<gloo::transport::Device> device)
      : rank_(rank), global_ranks_(std::move(global_ranks)), global_rank_(global_rank), store_(std::move(store)),
        prefix_(std::move(prefix)), timeout_s_(timeout_s), timeout_(static_cast<int64_t>(timeout_s * 1000)),
        device_(std::move(device)) {
    int n = size();
    if (n > 1) {
      auto ctx = std::make_shared<gloo::rendezvous::Context>(rank_, n);
      ctx->setTimeout(timeout_);
      GlooStoreAdapter adapter(std::make_shared<PrefixStore>(prefix_, store_));
      try {
        ctx->connectFullMesh(adapter, device_);
      } catch (const std::exception& e) {
        throw RuntimeError("rank " + std::to_string(global_rank_) + " could not connect process group '" + prefix_ +
                           "' (" + std::to_string(n) + " ranks) through the store at " + store_->describe() + ": " +
                           e.what());
      }
      context_ = ctx;
      board_ = std::make_unique<ArrivalBoard>(std::make_shared<PrefixStore>(prefix_, store_), rank_, global_ranks_);
    }
    worker_ = std::thread([this] { run(); });
  }

  ~GlooProcessGroup() override {
    // Collectives not started yet are cancelled rather than run: a group is destroyed on error paths too, where
    // running them would block the exit until the timeout. The one in flight (if any) still finishes or times out.
    std::deque<std::pair<std::shared_ptr<GlooWork>, std::function<void(uint32_t)>>> cancelled;
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
      cancelled.swap(queue_);
    }
    cv_.notify_all();
    for (auto& item : cancelled)
      item.first->finish(std::make_exception_ptr(
          RuntimeError(item.first->what() + " cancelled: its process group was destroyed first")));
    worker_.join();
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(global_ranks_.size()); }
  std::string backend_name() const override { return "gloo"; }

  std::shared_ptr<Work> allreduce_async(void* buf, size_t count, DType t, ReduceOp op) override {
    return enqueue(describe("allreduce", count, t, op), [=, this](uint32_t tag) {
      if (size() > 1 && count > 0) {
        // Ring reduce-scatter then ring allgather, both in the caller's buffer, over n near-equal chunks.
        Chunks c = split(count, dtype_size(t));
        char* p = static_cast<char*>(buf);
        ring_reduce_scatter(p, p, nullptr, c, t, op, slot_of(tag, 0));
        ring_allgather(p, c, slot_of(tag, 1));
      }
      if (op == ReduceOp::Avg) scale(buf, count, t, 1.0f / static_cast<float>(size()));
    });
  }

  std::shared_ptr<Work> reduce_scatter_async(const void* in, void* out, size_t count, DType t,
                                             ReduceOp op) override {
    return enqueue(describe("reduce_scatter", count, t, op), [=, this](uint32_t tag) {
      size_t esize = dtype_size(t), bytes = count * esize;
      if (size() == 1 || count == 0) {
        std::memmove(out, in, bytes);
      } else {
        Chunks c = equal_chunks(count, esize);
        if (work_.size() < bytes * c.size.size()) work_.resize(bytes * c.size.size());
        ring_reduce_scatter(static_cast<const char*>(in), work_.data(), static_cast<char*>(out), c, t, op,
                            slot_of(tag, 0));
      }
      if (op == ReduceOp::Avg) scale(out, count, t, 1.0f / static_cast<float>(size()));
    });
  }

  std::shared_ptr<Work> allgather_async(const void* in, void* out, size_t count, DType t) override {
    return enqueue(describe("allgather", count, t), [=, this](uint32_t tag) {
      size_t bytes = count * dtype_size(t);
      char* mine = static_cast<char*>(out) + static_cast<size_t>(rank_) * bytes;
      if (in != mine) std::memmove(mine, in, bytes);
      if (size() == 1 || count == 0) return;
      ring_allgather(static_cast<char*>(out), equal_chunks(count, dtype_size(t)), slot_of(tag, 1));
    });
  }

  std::shared_ptr<Work> broadcast_async(void* buf, size_t count, DType t, int root) override {
    if (root < 0 || root >= size())
      throw RuntimeError("broadcast: root " + std::to_string(root) + " is not a rank of a group of " +
                         std::to_string(size()));
    return enqueue(describe("broadcast", count, t) + " from rank " + std::to_string(root), [=, this](uint32_t tag) {
      if (size() == 1 || count == 0) return;
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(buf), count * dtype_size(t));
      opts.setRoot(root);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
  }

  void barrier() override {
    enqueue("barrier", [this](uint32_t tag) {
      if (size() == 1) return;
      gloo::BarrierOptions opts(context_);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    })->wait();
  }

  std::unique_ptr<ProcessGroup> new_group(const std::vector<int>& ranks) override {
    const SubgroupMembers g = subgroup_members(ranks, global_rank_, global_ranks_, prefix_);
    // Members create the same groups in the same order, so the per-list counter names the same namespace on each.
    int nth = subgroup_count_[g.key]++;
    std::string prefix = prefix_ + "/[" + g.key + "]#" + std::to_string(nth);
    return std::make_unique<GlooProcessGroup>(g.rank_in_group, g.ranks, global_rank_, store_, prefix, timeout_s_,
                                              device_);
  }

 private:
  std::string describe(const char* op, size_t count, DType t, std::optional<ReduceOp> rop = std::nullopt) const {
    std::string s = std::string(op) + " of " + std::to_string(count) + " " + dtype_name(t) + " elements";
    if (rop) s += std::string(" (") + reduce_op_name(*rop) + ")";
    return s;
  }

  // Byte offset and size of each rank's chunk of a buffer.
  struct Chunks {
    std::vector<size_t> off, size;
  };
  Chunks equal_chunks(size_t count, size_t esize) const {
    Chunks c;
    for (int i = 0; i < size(); ++i) {
      c.off.push_back(static_cast<size_t>(i) * count * esize);
      c.size.push_back(count * esize);
    }
    return c;
  }
  // count elements over n chunks whose sizes differ by at most one element.
  Chunks split(size_t count, size_t esize) const {
    Chunks c;
    size_t n = static_cast<size_t>(size()), at = 0;
    for (size_t i = 0; i < n; ++i) {
      size_t elems = count / n + (i < count % n ? 1 : 0);
      c.off.push_back(at * esize);
      c.size.push_back(elems * esize);
      at += elems;
    }
    return c;
  }
  static uint64_t slot_of(uint32_t tag, int phase) {
    return (uint64_t{0x5a} << 56) | (static_cast<uint64_t>(phase) << 32) | tag;
  }

  // Ring reduce-scatter: at step s rank r sends its partial sum of chunk r-s-1 to its right neighbour and folds the
  // left neighbour's partial sum of chunk r-s-2 into its own; after n-1 steps it holds chunk r in full. Step 0
  // sends from in; partial sums go to acc (which may be in itself), the final chunk to out (nullptr: into acc).
  // Chunks move in segments: one huge send stalls gloo's TCP pair, and segments let the reduction of one overlap
  // the transfer of the next. Scratch buffers persist across calls: this VM's page faults are expensive.
  void ring_reduce_scatter(const char* in, char* acc, char* out, const Chunks& c, DType t, ReduceOp op,
                           uint64_t slot) {
    const int n = size();
    const size_t esize = dtype_size(t), max_chunk = *std::max_element(c.size.begin(), c.size.end());
    if (incoming_.size() < max_chunk) incoming_.resize(max_chunk);
    const size_t total = c.off.back() + c.size.back();
    auto in_buf = context_->createUnboundBuffer(const_cast<char*>(in), total);
    auto acc_buf = acc == in ? nullptr : context_->createUnboundBuffer(acc, total);
    auto recv_buf = context_->createUnboundBuffer(incoming_.data(), max_chunk);
    const int right = (rank_ + 1) % n, left = (rank_ + n - 1) % n;
    for (int s = 0; s < n - 1; ++s) {
      size_t send_idx = static_cast<size_t>((rank_ - s - 1 + 2 * n) % n);
      size_t recv_idx = static_cast<size_t>((rank_ - s - 2 + 2 * n) % n);
      auto& send_from = (s == 0 || !acc_buf) ? in_buf : acc_buf;
      size_t send_bytes = c.size[send_idx], recv_bytes = c.size[recv_idx];
      size_t sends = 0, recvs = 0;
      for (size_t o = 0; o < recv_bytes; o += kSegmentBytes, ++recvs)
        recv_buf->recv(left, slot, o, std::min(kSegmentBytes, recv_bytes - o));
      for (size_t o = 0; o < send_bytes; o += kSegmentBytes, ++sends)
        send_from->send(right, slot, c.off[send_idx] + o, std::min(kSegmentBytes, send_bytes - o));
      char* dst = (s == n - 2 && out) ? out : acc + c.off[recv_idx];
      const char* mine = in + c.off[recv_idx];
      for (size_t k = 0, o = 0; k < recvs; ++k, o += kSegmentBytes) {
        // Segments from one peer on one slot complete in order, so the k-th completion is segment k.
        if (!recv_buf->waitRecv(timeout_))
          throw RuntimeError("receive from rank " + std::to_string(global_ranks_[left]) + " aborted");
        size_t len = std::min(kSegmentBytes, recv_bytes - o);
        reduce_into(dst + o, mine + o, incoming_.data() + o, len / esize, t, op);
      }
      for (size_t k = 0; k < sends; ++k)
        if (!send_from->waitSend(timeout_))
          throw RuntimeError("send to rank " + std::to_string(global_ranks_[right]) + " aborted");
    }
  }

  // Ring allgather in place: rank r's chunk is already in buf; at step s it forwards chunk r-s to the right and
  // receives chunk r-s-1 from the left straight into its place.
  void ring_allgather(char* buf, const Chunks& c, uint64_t slot) {
    const int n = size();
    auto ub = context_->createUnboundBuffer(buf, c.off.back() + c.size.back());
    const int right = (rank_ + 1) % n, left = (rank_ + n - 1) % n;
    for (int s = 0; s < n - 1; ++s) {
      size_t send_idx = static_cast<size_t>((rank_ - s + n) % n);
      size_t recv_idx = static_cast<size_t>((rank_ - s - 1 + 2 * n) % n);
      size_t sends = 0, recvs = 0;
      for (size_t o = 0; o < c.size[recv_idx]; o += kSegmentBytes, ++recvs)
        ub->recv(left, slot, c.off[recv_idx] + o, std::min(kSegmentBytes, c.size[recv_idx] - o));
      for (size_t o = 0; o < c.size[send_idx]; o += kSegmentBytes, ++sends)
        ub->send(right, slot, c.off[send_idx] + o, std::min(kSegmentBytes, c.size[send_idx] - o));
      for (size_t k = 0; k < recvs; ++k)
        if (!ub->waitRecv(timeout_))
          throw RuntimeError("receive from rank " + std::to_string(global_ranks_[left]) + " aborted");
      for (size_t k = 0; k < sends; ++k)
        if (!ub->waitSend(timeout_))
          throw RuntimeError("send to rank " + std::to_string(global_ranks_[right]) + " aborted");
    }
  }

  std::shared_ptr<Work> enqueue(std::string what, std::function<void(uint32_t)> fn) {
    auto work = std::make_shared<GlooWork>(std::move(what));
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.emplace_back(work, std::move(fn));
    }
    cv_.notify_all();
    return work;
  }

  void run() {
    uint32_t tag = 0;
    while (true) {
      std::pair<std::shared_ptr<GlooWork>, std::function<void(uint32_t)>> item;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      std::exception_ptr err;
      const uint32_t seq = tag++;
      if (board_) board_->arrived(seq);
      try {
        item.second(seq);
      } catch (const std::exception& e) {
        err = std::make_exception_ptr(RuntimeError(explain(item.first->what(), e.what(), seq)));
      }
      item.first->finish(err);
    }
  }

  std::string explain(const std::string& what, const std::string& cause, uint32_t seq) {
    std::string where = " on rank " + std::to_string(global_rank_) + " (group of " + std::to_string(size()) + ")";
    std::string lower = cause;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower.find("timed out") != std::string::npos || lower.find("timeout") != std::string::npos) {
      char secs[32];
      std::snprintf(secs, sizeof(secs), "%g", timeout_s_);
      std::string who = "a peer never arrived";
      if (auto behind = board_ ? board_->missing(seq, std::chrono::milliseconds(500)) : std::nullopt) {
        if (!behind->empty())
          who = describe_ranks(*behind) + " never arrived";
        else
          who = "every rank arrived, but the transfer stalled";
      }
      return what + " timed out after " + secs + " s" + where + ": " + who +
             " (a rank is stuck, slow or issued a different sequence of collectives) [" + cause + "]";
    }
    return what + " failed" + where + ": " + cause +
           (lower.find("closed") != std::string::npos || lower.find("reset") != std::string::npos
                ? " (a peer rank ended or lost its connection)"
                : "");
  }

  int rank_;
  std::vector<int> global_ranks_;
  int global_rank_;
  std::shared_ptr<Store> store_;
  std::string prefix_;
  double timeout_s_;
  milliseconds timeout_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
  std::unique_ptr<ArrivalBoard> board_;  // groups of more than one rank
  std::map<std::string, int> subgroup_count_;
  std::vector<char> work_, incoming_;  // ring scratch, grown on demand and kept (used by the worker thread only)

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<GlooWork>, std::function<void(uint32_t)>>> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_gloo_process_group(int rank, int world_size, std::shared_ptr<Store> store,
                                                      double timeout_s, const std::string& local_address) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw RuntimeError("gloo process group: rank " + std::to_string(rank) + " is outside a world of " +
                       std::to_string(world_size));
  std::shared_ptr<gloo::transport::Device> device;
  if (world_size > 1) {
    std::string host = store->describe();
    host = host.substr(0, host.rfind(':'));
    gloo::transport::tcp::attr attr;
    attr.hostname = local_address.empty() ? local_address_towards(host) : local_address;
    device = gloo::transport::tcp::CreateDevice(attr);
  }
  std::vector<int> ranks(static_cast<size_t>(world_size));
  for (int i = 0; i < world_size; ++i) ranks[static_cast<size_t>(i)] = i;
  return std::make_unique<GlooProcessGroup>(rank, ranks, rank, std::move(store), "gloo", timeout_s, device);
}

}  // namespace zt
