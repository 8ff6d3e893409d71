// Chunking, completion accounting and waiting shared by both AIO backends, and the backend choice.
#include "offload/async_io.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "offload/aio_chunks.h"

namespace zt::offload {
namespace detail {
namespace {

const char* op_name(IoOp op) { return op == IoOp::Read ? "read" : "write"; }

std::string describe(const Chunk& c) {
  return std::string("aio ") + op_name(c.op) + " of " + std::to_string(c.request_bytes) + " bytes at offset " +
         std::to_string(c.request_offset) + " of " + c.path;
}

void finish(Chunk& c, const std::string& error) {
  std::lock_guard<std::mutex> lock(c.request->mu);
  if (!error.empty() && c.request->error.empty()) c.request->error = error;
  if (--c.request->remaining == 0) c.request->cv.notify_all();
}

}  // namespace

void fail_chunk(Chunk& c, const std::string& why) {
  finish(c, describe(c) + " failed: " + why + " (block at offset " + std::to_string(c.next_offset()) + ", " +
                std::to_string(c.next_len()) + " bytes)");
}

bool on_transfer(Chunk& c, ssize_t result) {
  if (result == -EINTR || result == -EAGAIN) return false;
  if (result < 0) {
    fail_chunk(c, std::strerror(static_cast<int>(-result)));
    return true;
  }
  if (result == 0 && c.done < c.need) {
    // A read at end of file, or a write the kernel refused to make progress on: never retry forever.
    fail_chunk(c, std::string("short ") + op_name(c.op) + ": " + std::to_string(c.done) + " of " +
                      std::to_string(c.need) + " bytes" + (c.op == IoOp::Read ? " (end of file)" : ""));
    return true;
  }
  c.done += static_cast<size_t>(result);
  if (c.done < c.need) return false;
  if (c.copy_to != nullptr) std::memcpy(c.copy_to, c.bounce.get(), c.copy_bytes);
  finish(c, "");
  return true;
}

ChunkedAsyncIO::ChunkedAsyncIO(const AioConfig& cfg)
    : block_size_(std::clamp<size_t>(static_cast<size_t>(std::max<int64_t>(cfg.block_size, 0)) / kIoAlignment *
                                         kIoAlignment,
                                     kIoAlignment, size_t{1} << 30)),  // an SQE length is 32 bits
      queue_depth_(std::max(1, cfg.queue_depth)),
      parallelism_(std::max(1, cfg.intra_op_parallelism)),
      single_submit_(cfg.single_submit),
      overlap_events_(cfg.overlap_events) {}

IoHandle ChunkedAsyncIO::read(const IoFile& file, void* buf, size_t bytes, int64_t offset) {
  return submit(IoOp::Read, file, static_cast<char*>(buf), bytes, offset);
}

IoHandle ChunkedAsyncIO::write(const IoFile& file, const void* buf, size_t bytes, int64_t offset) {
  // The buffer is only read from; the chunk type is shared with reads.
  return submit(IoOp::Write, file, const_cast<char*>(static_cast<const char*>(buf)), bytes, offset);
}

IoHandle ChunkedAsyncIO::submit(IoOp op, const IoFile& file, char* buf, size_t bytes, int64_t offset) {
  std::string what = std::string("aio ") + op_name(op) + " of " + std::to_string(bytes) + " bytes at offset " +
                     std::to_string(offset) + " of " + file.path();
  if (file.fd() < 0) throw RuntimeError(what + ": the file is closed");
  if (offset < 0 || offset % static_cast<int64_t>(kIoAlignment) != 0 ||
      reinterpret_cast<uintptr_t>(buf) % kIoAlignment != 0) {
    throw RuntimeError(what + ": buffer address and offset must be multiples of " + std::to_string(kIoAlignment));
  }
  file.check_not_deleted(op_name(op));

  auto request = std::make_shared<Request>();
  std::vector<std::unique_ptr<Chunk>> chunks;
  auto add = [&](char* p, size_t len, int64_t off) {
    auto c = std::make_unique<Chunk>();
    c->request = request;
    c->op = op;
    c->fd = file.fd();
    c->path = file.path();
    c->buf = p;
    c->len = len;
    c->need = len;
    c->offset = off;
    c->request_offset = offset;
    c->request_bytes = bytes;
    chunks.push_back(std::move(c));
    return chunks.back().get();
  };
  // Buffered files take any length; O_DIRECT ones move the aligned body directly and the tail through a bounce.
  size_t body = file.direct() ? bytes / kIoAlignment * kIoAlignment : bytes;
  for (size_t at = 0; at < body; at += block_size_) {
    add(buf + at, std::min(block_size_, body - at), offset + static_cast<int64_t>(at));
  }
  if (body < bytes) {
    size_t tail = bytes - body;
    char* bounce = static_cast<char*>(std::aligned_alloc(kIoAlignment, kIoAlignment));
    if (bounce == nullptr) throw RuntimeError(what + ": out of memory for the tail bounce buffer");
    std::memset(bounce, 0, kIoAlignment);
    Chunk* c = add(bounce, kIoAlignment, offset + static_cast<int64_t>(body));
    c->bounce.reset(bounce);
    if (op == IoOp::Write) {
      std::memcpy(bounce, buf + body, tail);
    } else {
      c->need = tail;  // the file may end inside the padded block
      c->copy_to = buf + body;
      c->copy_bytes = tail;
    }
  }
  request->remaining = chunks.size();

  IoHandle handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handle = next_handle_++;
    requests_.emplace(handle, request);
  }
  if (!chunks.empty()) enqueue(std::move(chunks));
  return handle;
}

void ChunkedAsyncIO::wait(IoHandle handle) {
  std::shared_ptr<Request> request;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = requests_.find(handle);
    if (it == requests_.end()) {
      throw RuntimeError("aio: wait on unknown or already completed handle " + std::to_string(handle));
    }
    request = it->second;
    requests_.erase(it);
  }
  std::unique_lock<std::mutex> lock(request->mu);
  request->cv.wait(lock, [&] { return request->remaining == 0; });
  if (!request->error.empty()) throw RuntimeError(request->error);
}

void ChunkedAsyncIO::wait_all() {
  std::unordered_map<IoHandle, std::shared_ptr<Request>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(requests_);
  }
  std::string first_error;
  IoHandle first_handle = 0;
  for (auto& [handle, request] : all) {
    std::unique_lock<std::mutex> lock(request->mu);
    request->cv.wait(lock, [&] { return request->remaining == 0; });
    if (!request->error.empty() && (first_error.empty() || handle < first_handle)) {
      first_error = request->error;
      first_handle = handle;
    }
  }
  if (!first_error.empty()) throw RuntimeError(first_error);
}

size_t ChunkedAsyncIO::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.size();
}

}  // namespace detail

std::unique_ptr<AsyncIO> make_async_io(const AioConfig& cfg, AioBackend backend) {
  if (backend == AioBackend::Threads) return detail::make_thread_io(cfg);
  return detail::make_uring_io(cfg);
}

std::unique_ptr<AsyncIO> make_async_io(const AioConfig& cfg) {
  const char* env = std::getenv("ZT_AIO_BACKEND");
  std::string choice = env != nullptr ? env : "";
  if (choice == "threads") return detail::make_thread_io(cfg);
  if (choice == "io_uring") return detail::make_uring_io(cfg);
  if (!choice.empty() && choice != "auto") {
    throw ConfigError("ZT_AIO_BACKEND must be io_uring, threads or auto, got '" + choice + "'");
  }
  try {
    return detail::make_uring_io(cfg);
  } catch (const RuntimeError& e) {
    spdlog::info("aio: {}; using the pread/pwrite thread pool instead", e.what());
    return detail::make_thread_io(cfg);
  }
}

}  // namespace zt::offload
