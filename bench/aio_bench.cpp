// Swap-file throughput of zerotrain's AIO: writes then reads one file of --size bytes. Default (the shape of fio's
// --rw=write/read --bs --iodepth job): one request per block, --qd of them in flight, cycling through qd buffers
// of one block as fio does. --one-request: the whole file as a single request from one file-sized buffer (what an
// engine does with a partition), which the backend cuts into blocks itself. Prints
// "RESULT op=<read|write> backend=<name> gbps=<GB/s>" lines that bench/aio_bench.sh puts next to fio's numbers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "offload/async_io.h"

namespace {

int64_t parse_size(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  std::string unit = end;
  if (unit == "k" || unit == "K") v *= 1024;
  if (unit == "m" || unit == "M") v *= 1024 * 1024;
  if (unit == "g" || unit == "G") v *= 1024.0 * 1024 * 1024;
  return static_cast<int64_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  int64_t size = 256 << 20;
  zt::AioConfig cfg;
  std::string backend = "auto";
  int iters = 3;
  bool direct = true;
  bool one_request = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "aio_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dir") {
      dir = next();
    } else if (a == "--size") {
      size = parse_size(next());
    } else if (a == "--block") {
      cfg.block_size = parse_size(next());
    } else if (a == "--qd") {
      cfg.queue_depth = std::atoi(next());
    } else if (a == "--parallel") {
      cfg.intra_op_parallelism = std::atoi(next());
    } else if (a == "--single-submit") {
      cfg.single_submit = true;
    } else if (a == "--no-overlap") {
      cfg.overlap_events = false;
    } else if (a == "--backend") {
      backend = next();
    } else if (a == "--iters") {
      iters = std::atoi(next());
    } else if (a == "--one-request") {
      one_request = true;
    } else if (a == "--buffered") {
      direct = false;
    } else {
      std::fprintf(stderr,
                   "usage: aio_bench [--dir D] [--size 256M] [--block 1M] [--qd 8] [--parallel 1] [--single-submit]"
                   " [--no-overlap] [--backend auto|io_uring|threads] [--iters 3] [--buffered] [--one-request]\n");
      return 2;
    }
  }
  try {
    std::unique_ptr<zt::offload::AsyncIO> aio =
        backend == "auto"      ? zt::offload::make_async_io(cfg)
        : backend == "threads" ? zt::offload::make_async_io(cfg, zt::offload::AioBackend::Threads)
                               : zt::offload::make_async_io(cfg, zt::offload::AioBackend::IoUring);
    zt::offload::IoFile file = zt::offload::IoFile::create_in(dir, "bench", direct);
    int64_t block = cfg.block_size;
    int64_t slots = cfg.queue_depth * std::max(1, cfg.intra_op_parallelism);
    size_t buf_bytes = zt::offload::io_padded_size(one_request ? size : block * slots);
    char* buf = static_cast<char*>(std::aligned_alloc(4096, buf_bytes));
    for (size_t i = 0; i < buf_bytes; i++) buf[i] = static_cast<char>(i * 131);
    std::printf("aio_bench: %s, %s, file %s, size %lld, block %lld, qd %d, rings %d, %s\n", aio->backend_name(),
                file.direct() ? "O_DIRECT" : "buffered", file.path().c_str(), static_cast<long long>(size),
                static_cast<long long>(block), cfg.queue_depth, cfg.intra_op_parallelism,
                one_request ? "one request" : "one request per block");
    // Requests of one block each, `slots` in flight, buffer slot k reused once request k - slots is done.
    auto per_block = [&](bool write) {
      std::vector<zt::offload::IoHandle> handles;
      for (int64_t off = 0, k = 0; off < size; off += block, k++) {
        if (k >= slots) aio->wait(handles[k - slots]);
        char* slot = buf + (k % slots) * block;
        int64_t len = std::min(block, size - off);
        handles.push_back(write ? aio->write(file, slot, len, off) : aio->read(file, slot, len, off));
      }
      aio->wait_all();
    };
    auto measure = [&](bool write) {
      double best = 0;
      for (int it = 0; it < iters; it++) {
        auto t0 = std::chrono::steady_clock::now();
        if (one_request) {
          aio->wait(write ? aio->write(file, buf, size, 0) : aio->read(file, buf, size, 0));
        } else {
          per_block(write);
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(size) / s / 1e9);
      }
      return best;
    };
    // Lay the file out first, untimed, as fio does: the timed writes then overwrite allocated blocks instead of
    // extending a fresh file (which measures the filesystem's block allocation too).
    if (one_request)
      aio->wait(aio->write(file, buf, size, 0));
    else
      per_block(true);
    double w = measure(true);
    double r = measure(false);
    std::printf("RESULT op=write backend=%s gbps=%.3f\n", aio->backend_name(), w);
    std::printf("RESULT op=read backend=%s gbps=%.3f\n", aio->backend_name(), r);
    std::free(buf);
  } catch (const zt::Error& e) {
    std::fprintf(stderr, "aio_bench: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
