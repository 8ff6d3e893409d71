// One rank of test_zero's multi-process checks (see zero_checks.h). Joins the job from torchrun's variables and runs
//   zt_zero_worker all       allgather_partition, GradientBucketer and ParamCoordinator checks at this world size
//   zt_zero_worker corrupt   the bucketer check with rank 1's gradients altered (must fail on rank 0)
// Prints every failure and exits 1 if there was one.
#include <cstdio>
#include <string>

#include "engine/base/error.h"
#include "engine/comm/distributed.h"
#include "tests/zero/programs/zero_checks.h"

int main(int argc, char** argv) {
  using namespace zt;
  const std::string mode = argc > 1 ? argv[1] : "all";
  try {
    Distributed d = init_distributed(CommBackend::Gloo, 60.0);
    ProcessGroup& pg = *d.group;
    GPT2 model(zerotest::odd_dims(), false);
    zerotest::Failures f;
    if (mode == "all") {
      for (size_t bucket : {size_t{1}, size_t{777}, size_t{1} << 30}) zerotest::check_allgather_partition(pg, model, bucket, f);
      for (bool overlap : {false, true})
        for (size_t bucket : {size_t{1}, size_t{1000}, size_t{7777}, size_t{1} << 30})
          zerotest::check_bucketer(pg, model, bucket, overlap, f);
      ZeroConfig z;
      z.stage = 3;
      z.stage3_param_persistence_threshold = 200;
      z.stage3_max_live_parameters = 34000;
      z.stage3_max_reuse_distance = 0;
      z.stage3_prefetch_bucket_size = 17000;
      zerotest::CoordinatorRun run = zerotest::run_coordinator(pg, z, f);
      zerotest::check_coordinator_events(run, z, f);
      size_t largest = 0;
      for (size_t p : run.padded) largest = std::max(largest, p);
      if (run.peak_live > static_cast<size_t>(z.stage3_max_live_parameters) + largest)
        f.add("coordinator: peak live ", run.peak_live, " over max_live + the largest unit");
    } else if (mode == "corrupt") {
      zerotest::check_bucketer(pg, model, 1000, true, f, pg.rank() == 1 ? 1.0f : 0.0f);
    } else {
      throw ConfigError("zt_zero_worker: unknown mode '" + mode + "'");
    }
    pg.barrier();
    if (!f.ok()) {
      std::fprintf(stderr, "rank %d of %d: %zu failure(s):\n%s", d.rank, d.world_size, f.lines.size(), f.str().c_str());
      return 1;
    }
    std::printf("rank %d of %d: ok\n", d.rank, d.world_size);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zt_zero_worker: %s\n", e.what());
    return 1;
  }
}
