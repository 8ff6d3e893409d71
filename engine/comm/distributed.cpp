// init_distributed: the rendezvous handshake before any process group exists.
#include "engine/comm/distributed.h"

#include <chrono>
#include <thread>

#include "engine/base/error.h"
#include "engine/base/logging.h"

namespace zt {
namespace {

using Clock = std::chrono::steady_clock;

// Every rank registers; each compares its WORLD_SIZE with rank 0's and a mismatch is posted under zt/mismatch so
// every rank (not only the odd one) stops with the same message instead of waiting for peers that never come.
void check_world(Store& store, const WorkerEnv& env, double timeout_s) {
  const std::string ws = std::to_string(env.world_size);
  if (env.rank == 0) store.set_string("zt/world_size", ws);
  store.set_string("zt/ws/" + std::to_string(env.rank), ws);
  store.add("zt/joined", 1);
  auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (true) {
    if (store.check({"zt/mismatch"})) {
      std::string msg = store.get_string("zt/mismatch");
      store.add("zt/mismatch_seen", 1);  // lets rank 0, which serves the store, exit once everyone has read it
      throw RuntimeError(msg);
    }
    if (env.rank != 0 && store.check({"zt/world_size"})) {
      std::string master_ws = store.get_string("zt/world_size");
      if (master_ws != ws) {
        std::string msg = "WORLD_SIZE mismatch: rank " + std::to_string(env.rank) + " has WORLD_SIZE=" + ws +
                          " but rank 0 (the master at " + store.describe() + ") has WORLD_SIZE=" + master_ws;
        store.set_string("zt/mismatch", msg);
        throw RuntimeError(msg);
      }
      if (store.check({"zt/ready"})) return;
    }
    int64_t joined = store.add("zt/joined", 0);
    if (env.rank == 0 && joined == env.world_size) {
      // Every rank posted its WORLD_SIZE before joining: rank 0 checks them all before declaring the world ready,
      // so a mismatch is reported here too rather than as a later connection timeout.
      for (int r = 1; r < env.world_size; ++r) {
        const std::string theirs = store.get_string("zt/ws/" + std::to_string(r));
        if (theirs != ws) {
          std::string msg = "WORLD_SIZE mismatch: rank " + std::to_string(r) + " has WORLD_SIZE=" + theirs +
                            " but rank 0 (the master at " + store.describe() + ") has WORLD_SIZE=" + ws;
          store.set_string("zt/mismatch", msg);
          // The store lives in this process: keep it up (a few seconds at most) until the others have read why.
          const auto linger = Clock::now() + std::chrono::seconds(3);
          while (store.add("zt/mismatch_seen", 0) < joined - 1 && Clock::now() < linger)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          throw RuntimeError(msg);
        }
      }
      store.set_string("zt/ready", "1");
      return;
    }
    if (joined > env.world_size) {
      std::string msg = "WORLD_SIZE mismatch: " + std::to_string(joined) + " ranks joined the rendezvous at " +
                        store.describe() + " but WORLD_SIZE is " + ws;
      store.set_string("zt/mismatch", msg);
      throw RuntimeError(msg);
    }
    if (Clock::now() > deadline)
      throw RuntimeError("rendezvous at " + store.describe() + " timed out after " +
                         std::to_string(static_cast<int>(timeout_s)) + " s on rank " + std::to_string(env.rank) +
                         ": " + std::to_string(joined) + " of " + ws + " ranks arrived");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

Distributed init_distributed(const WorkerEnv& env, CommBackend backend, double timeout_s, Device buffers) {
  Distributed d;
  d.rank = env.rank;
  d.world_size = env.world_size;
  d.local_rank = env.local_rank;
  d.local_world_size = env.local_world_size;
  if (env.world_size == 1) {
    d.store = std::make_shared<LocalStore>();
  } else {
    d.store = std::make_shared<TcpStore>(env.master_addr, env.master_port, timeout_s, env.rank == 0);
    check_world(*d.store, env, timeout_s);
  }
  d.group = make_process_group(backend, env.rank, env.world_size, d.store, timeout_s, buffers, env.local_world_size);
  spdlog::debug("joined a world of {} as rank {} (local {}/{}), backend {}, store {}", d.world_size, d.rank,
                d.local_rank, d.local_world_size, d.group->backend_name(), d.store->describe());
  return d;
}

Distributed init_distributed(CommBackend backend, double timeout_s, Device buffers) {
  auto env = read_worker_env();
  return init_distributed(env ? *env : WorkerEnv{}, backend, timeout_s, buffers);
}

}  // namespace zt
