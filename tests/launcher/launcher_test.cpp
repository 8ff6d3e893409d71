// The launcher: variables each worker gets, output prefixes, fail-fast stop when a rank dies or throws, signal
// forwarding, workers dying with their launcher, parallel jobs, a collective timeout, and a two-node job across two
// network namespaces.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/base/error.h"
#include "launcher/launcher.h"
#include "launcher/worker_env.h"
#include "tests/comm/test_helpers.h"

namespace zt {
namespace {

using test::free_port;
using test::launch_cmd;
using test::program;
using test::run_shell;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Launcher, WorkersGetTorchrunVariablesAndPrefixedOutput) {
  int port = free_port();
  auto r = run_shell("CUDA_VISIBLE_DEVICES= " + program("zt_launch") +
                     " --nproc_per_node 2 --nnodes 2 --node_rank 1 --master_addr 10.1.2.3 --master_port " +
                     std::to_string(port) + " -- /usr/bin/env");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"[rank 2] RANK=2", "[rank 3] RANK=3", "[rank 2] LOCAL_RANK=0", "[rank 3] LOCAL_RANK=1",
                           "[rank 2] WORLD_SIZE=4", "[rank 3] LOCAL_WORLD_SIZE=2", "[rank 2] MASTER_ADDR=10.1.2.3",
                           "[rank 3] ZT_LAUNCHED=1"})
    EXPECT_TRUE(contains(r.output, line)) << line << "\n" << r.output;
  EXPECT_TRUE(contains(r.output, "[rank 2] MASTER_PORT=" + std::to_string(port))) << r.output;
}

TEST(Launcher, BadOptionsAreConfigErrors) {
  EXPECT_THROW(launch_workers({.nproc_per_node = 0}, {"/bin/true"}), ConfigError);
  EXPECT_THROW(launch_workers({.nproc_per_node = 1, .nnodes = 2, .node_rank = 2}, {"/bin/true"}), ConfigError);
  EXPECT_THROW(launch_workers({.master_port = 70000}, {"/bin/true"}), ConfigError);
  EXPECT_THROW(launch_workers({}, {}), ConfigError);
  EXPECT_EQ(launch_workers({.nproc_per_node = 2}, {"/bin/true"}), 0);
  EXPECT_EQ(launch_workers({.nproc_per_node = 2}, {"/bin/false"}), 1);
  EXPECT_EQ(launch_workers({.nproc_per_node = 1}, {"/nonexistent/program"}), 127);
}

TEST(Launcher, DefaultProcessCount) {
  setenv("CUDA_VISIBLE_DEVICES", "3,5", 1);
  EXPECT_EQ(visible_gpu_count(), 2);
  EXPECT_EQ(default_nproc_per_node(8, 1), 2);
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  EXPECT_EQ(visible_gpu_count(), 0);
  EXPECT_EQ(default_nproc_per_node(8, 2), 4);
  EXPECT_EQ(default_nproc_per_node(0, 1), 1);
  EXPECT_THROW(default_nproc_per_node(3, 2), ConfigError);
  unsetenv("CUDA_VISIBLE_DEVICES");
}

// Sets environment variables for one test and removes them after.
struct ScopedEnv {
  std::vector<std::string> names;
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (auto& [k, v] : vars) {
      setenv(k, v, 1);
      names.push_back(k);
    }
  }
  ~ScopedEnv() {
    for (auto& n : names) unsetenv(n.c_str());
  }
};

TEST(WorkerEnv, ReadsEachLaunchersVariables) {
  for (const char* v : {"RANK", "WORLD_SIZE", "ZT_LAUNCHED", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID",
                        "MASTER_ADDR", "MASTER_PORT"})
    unsetenv(v);
  EXPECT_FALSE(read_worker_env().has_value());
  EXPECT_FALSE(running_under_external_launcher());
  {
    ScopedEnv e{{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                {"MASTER_ADDR", "10.0.0.9"}, {"MASTER_PORT", "1234"}, {"ZT_LAUNCHED", "1"}};
    auto w = read_worker_env();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->rank, 3);
    EXPECT_EQ(w->world_size, 4);
    EXPECT_EQ(w->local_rank, 1);
    EXPECT_EQ(w->master_addr, "10.0.0.9");
    EXPECT_EQ(w->master_port, 1234);
    EXPECT_EQ(w->source, "zerotrain");
    EXPECT_FALSE(running_under_external_launcher());
  }
  {
    ScopedEnv e{{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
    EXPECT_TRUE(running_under_external_launcher());
    EXPECT_THROW(read_worker_env(), ConfigError);  // MPI without MASTER_ADDR/MASTER_PORT
    ScopedEnv m{{"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29400"}};
    auto w = read_worker_env();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->source, "openmpi");
    EXPECT_EQ(w->rank, 5);
    EXPECT_EQ(w->local_world_size, 4);
  }
  {
    ScopedEnv e{{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_STEP_ID", "0"},
                {"SLURM_NTASKS_PER_NODE", "2(x2)"}, {"MASTER_ADDR", "n0"}, {"MASTER_PORT", "29500"}};
    auto w = read_worker_env();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->source, "slurm");
    EXPECT_EQ(w->rank, 2);
    EXPECT_EQ(w->local_world_size, 2);
  }
  {
    ScopedEnv e{{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"MASTER_ADDR", "n0"}, {"MASTER_PORT", "29500"}};
    EXPECT_EQ(read_worker_env()->source, "pmi");
  }
  {
    ScopedEnv e{{"RANK", "4"}, {"WORLD_SIZE", "4"}};
    EXPECT_THROW(read_worker_env(), ConfigError);
  }
}

TEST(Launcher, KilledRankStopsTheJobWithinTenSeconds) {
  auto r = run_shell(launch_cmd(3, free_port(), "selfkill 1"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "rank 1 was killed by signal 9 (SIGKILL)")) << r.output;
  EXPECT_LT(r.seconds, 10.0) << r.output;
}

TEST(Launcher, ThrowingRankStopsTheJobAndItsMessageHasItsPrefix) {
  auto r = run_shell(launch_cmd(3, free_port(), "throw 2"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "[rank 2] zt_comm_worker: error: deliberate failure on rank 2")) << r.output;
  EXPECT_TRUE(contains(r.output, "stopping the other 2 ranks")) << r.output;
  // Rank 2's peers see its sockets close while it is still unwinding; when one of them is reaped first, the
  // launcher's SIGTERM may end rank 2 before its own exit. Either way the summary names rank 2's end.
  EXPECT_TRUE(contains(r.output, "rank 2 exited with code 1") || contains(r.output, "rank 2 was killed by signal 15"))
      << r.output;
  EXPECT_LT(r.seconds, 10.0) << r.output;
}

TEST(Launcher, CollectiveTimeoutNamesTheOperation) {
  auto r = run_shell(launch_cmd(2, free_port(), "sleep 1 6", /*timeout_s=*/2));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "[rank 0] zt_comm_worker: error: allreduce of 1234 f32 elements (sum) timed out "
                                 "after 2 s on rank 0 (group of 2): rank 1 never arrived"))
      << r.output;
  EXPECT_LT(r.seconds, 6.0) << "rank 1 should have been stopped, not waited for\n" << r.output;
}

TEST(Launcher, CollectiveTimeoutNamesTheRankThatNeverArrived) {
  // Ranks 0 and 1 wait on ring neighbours that are all alive; only the arrival counts can tell that rank 2 never
  // came. Whichever of them times out first is reported (the launcher then stops the rest).
  auto r = run_shell(launch_cmd(3, free_port(), "sleep 2 8", /*timeout_s=*/2));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "timed out after 2 s on rank 0 (group of 3): rank 2 never arrived") ||
              contains(r.output, "timed out after 2 s on rank 1 (group of 3): rank 2 never arrived"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "rank 1 never arrived")) << r.output;
  EXPECT_FALSE(contains(r.output, "ranks 1, 2 never arrived")) << r.output;
  EXPECT_LT(r.seconds, 8.0) << r.output;
}

TEST(Launcher, TwoJobsOnDifferentPortsRunAtOnce) {
  int p1 = free_port(), p2 = free_port();
  while (p2 == p1) p2 = free_port();
  auto r = run_shell("(" + launch_cmd(2, p1, "check") + " > /dev/null; echo job1_rc=$?) & (" +
                     launch_cmd(2, p2, "check") + " > /dev/null; echo job2_rc=$?); wait");
  EXPECT_TRUE(contains(r.output, "job1_rc=0")) << r.output;
  EXPECT_TRUE(contains(r.output, "job2_rc=0")) << r.output;
}

TEST(Launcher, SigtermReachesEveryWorker) {
  auto r = run_shell(program("zt_launch") + " --nproc_per_node 2 --master_port " + std::to_string(free_port()) +
                     " -- /bin/sleep 30 & pid=$!; sleep 0.5; kill -TERM $pid; wait $pid; echo launcher_rc=$?");
  EXPECT_TRUE(contains(r.output, "received SIGTERM; forwarding it to 2 workers")) << r.output;
  EXPECT_TRUE(contains(r.output, "launcher_rc=143")) << r.output;
  EXPECT_LT(r.seconds, 5.0) << r.output;
}

TEST(Launcher, WorkersDieWithTheLauncher) {
  // SIGKILL to the launcher cannot be forwarded; PR_SET_PDEATHSIG must take the workers down anyway.
  auto r = run_shell(program("zt_launch") + " --nproc_per_node 2 --master_port " + std::to_string(free_port()) +
                     " -- /bin/sleep 30 & pid=$!; sleep 0.5; kids=$(cat /proc/$pid/task/*/children); echo kids=$kids;"
                     " kill -KILL $pid; sleep 0.5; for k in $kids; do [ -e /proc/$k ] && "
                     "! grep -q '^State:.*Z' /proc/$k/status && echo alive=$k; done; true");
  EXPECT_TRUE(contains(r.output, "kids=")) << r.output;
  EXPECT_FALSE(contains(r.output, "kids=\n")) << "no workers seen\n" << r.output;
  EXPECT_FALSE(contains(r.output, "alive=")) << r.output;
}

// Two "nodes": two network namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2, which exist only inside
// them), each running a launcher with 2 workers; rank 0's store listens on node 0's veth address.
TEST(Launcher, TwoNodesInNetworkNamespaces) {
  std::string id = std::to_string(::getpid());
  std::string ns0 = "zt_node0_" + id, ns1 = "zt_node1_" + id;
  std::string v0 = "ztv0_" + id.substr(0, 9), v1 = "ztv1_" + id.substr(0, 9);
  struct Cleanup {
    std::string a, b;
    ~Cleanup() { run_shell("ip netns del " + a + "; ip netns del " + b); }
  } cleanup{ns0, ns1};
  auto made = run_shell("ip netns add " + ns0 + " && ip netns add " + ns1);
  if (made.exit_code != 0)
    GTEST_SKIP() << "cannot create network namespaces (needs root / CAP_NET_ADMIN): " << made.output;
  auto setup = run_shell(
      "set -e; ip link add " + v0 + " type veth peer name " + v1 + "; ip link set " + v0 + " netns " + ns0 +
      "; ip link set " + v1 + " netns " + ns1 + "; ip -n " + ns0 + " addr add 10.77.0.1/24 dev " + v0 + "; ip -n " +
      ns1 + " addr add 10.77.0.2/24 dev " + v1 + "; for n in " + ns0 + " " + ns1 + "; do ip -n $n link set lo up; done;" +
      " ip -n " + ns0 + " link set " + v0 + " up; ip -n " + ns1 + " link set " + v1 + " up");
  ASSERT_EQ(setup.exit_code, 0) << setup.output;
  auto node = [&](const std::string& ns, int node_rank) {
    return "ip netns exec " + ns + " env ZT_TEST_TIMEOUT_S=20 " + program("zt_launch") +
           " --nproc_per_node 2 --nnodes 2 --node_rank " + std::to_string(node_rank) +
           " --master_addr 10.77.0.1 --master_port 29500 -- " + program("zt_comm_worker") + " check";
  };
  auto r = run_shell("(" + node(ns0, 0) + "; echo node0_rc=$?) & (" + node(ns1, 1) + "; echo node1_rc=$?); wait");
  EXPECT_TRUE(contains(r.output, "node0_rc=0")) << r.output;
  EXPECT_TRUE(contains(r.output, "node1_rc=0")) << r.output;
  for (int rank = 0; rank < 4; ++rank)
    EXPECT_TRUE(contains(r.output, "[rank " + std::to_string(rank) + "] rank " + std::to_string(rank) + ": "))
        << r.output;
}

}  // namespace
}  // namespace zt
