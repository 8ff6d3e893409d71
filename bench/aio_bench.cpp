// Swap-file throughput of zerotrain's AIO: writes then reads one file of --size bytes as a single request, which
// the backend cuts into --block requests with --qd in flight per ring (the shape of fio's
// --rw=write/read --bs --iodepth job). Prints "RESULT op=<read|write> backend=<name> gbps=<GB/s>" lines that
// bench/aio_bench.sh puts next to fio's numbers.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

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
    } else if (a == "--buffered") {
      direct = false;
    } else {
      std::fprintf(stderr,
                   "usage: aio_bench [--dir D] [--size 256M] [--block 1M] [--qd 8] [--parallel 1] [--single-submit]"
                   " [--no-overlap] [--backend auto|io_uring|threads] [--iters 3] [--buffered]\n");
      return 2;
    }
  }
  try {
    std::unique_ptr<zt::offload::AsyncIO> aio =
        backend == "auto"      ? zt::offload::make_async_io(cfg)
        : backend == "threads" ? zt::offload::make_async_io(cfg, zt::offload::AioBackend::Threads)
                               : zt::offload::make_async_io(cfg, zt::offload::AioBackend::IoUring);
    zt::offload::IoFile file = zt::offload::IoFile::create_in(dir, "bench", direct);
    char* buf = static_cast<char*>(std::aligned_alloc(4096, zt::offload::io_padded_size(size)));
    for (int64_t i = 0; i < size; i++) buf[i] = static_cast<char>(i * 131);
    std::printf("aio_bench: %s, %s, file %s, size %lld, block %lld, qd %d, rings %d\n", aio->backend_name(),
                file.direct() ? "O_DIRECT" : "buffered", file.path().c_str(), static_cast<long long>(size),
                static_cast<long long>(cfg.block_size), cfg.queue_depth, cfg.intra_op_parallelism);
    auto measure = [&](bool write) {
      double best = 0;
      for (int it = 0; it < iters; it++) {
        auto t0 = std::chrono::steady_clock::now();
        aio->wait(write ? aio->write(file, buf, size, 0) : aio->read(file, buf, size, 0));
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(size) / s / 1e9);
      }
      return best;
    };
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
