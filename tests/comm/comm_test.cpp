// The communicator: the store in-process, the collectives over 1-4 processes on loopback (the worker program checks
// every result against a locally computed reference), and the rendezvous failure modes.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "engine/base/error.h"
#include "engine/comm/distributed.h"
#include "kernels/cpu/half_convert.h"
#include "tests/comm/test_helpers.h"

#ifdef ZT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace zt {
namespace {

using test::free_port;
using test::run_shell;

TEST(HalfConvert, KnownBitPatterns) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(1.00390625f), 0x3f80);  // halfway between 1 and 1+2^-7: ties to even (down)
  EXPECT_EQ(float_to_bf16(1.01171875f), 0x3f82);  // halfway, odd below: ties to even (up)
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16(70000.0f), 0x7c00);
  EXPECT_EQ(float_to_fp16(5.9604644775390625e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16(1.0f + 1.0f / 2048), 0x3c00);       // tie to even
  EXPECT_FLOAT_EQ(fp16_to_float(0x0001), 5.9604644775390625e-08f);
  EXPECT_FLOAT_EQ(fp16_to_float(0xc400), -4.0f);
  EXPECT_FLOAT_EQ(bf16_to_float(0x4049), 3.140625f);
  EXPECT_EQ(float_to_fp16(3.0e-5f), 503);  // subnormal: 3e-5 / 2^-24 = 503.3 rounds to 503
  for (float x : {0.0f, 0.5f, -7.0f, 1024.0f, 3.0517578125e-05f}) {
    EXPECT_FLOAT_EQ(fp16_to_float(float_to_fp16(x)), x) << x;
    EXPECT_FLOAT_EQ(bf16_to_float(float_to_bf16(x)), x) << x;
  }
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
}

TEST(TcpStore, SetGetAddWaitAcrossClients) {
  TcpStore server("127.0.0.1", 0, 5.0, /*is_server=*/true);
  int port = server.port();
  ASSERT_GT(port, 0);
  TcpStore client("127.0.0.1", port, 5.0, false);
  server.set_string("a", "hello");
  EXPECT_EQ(client.get_string("a"), "hello");
  EXPECT_TRUE(client.check({"a"}));
  EXPECT_FALSE(client.check({"a", "b"}));
  // get waits for a key set later by another client.
  std::thread setter([&] {
    TcpStore late("127.0.0.1", port, 5.0, false);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    late.set_string("b", std::string("\0bin\n", 5));
  });
  EXPECT_EQ(client.get_string("b"), std::string("\0bin\n", 5));
  setter.join();
  EXPECT_EQ(client.add("n", 5), 5);
  EXPECT_EQ(server.add("n", -2), 3);
  EXPECT_EQ(client.add("n", 0), 3);
  PrefixStore prefixed("g1", std::make_shared<TcpStore>("127.0.0.1", port, 5.0, false));
  prefixed.set_string("k", "v");
  EXPECT_EQ(client.get_string("g1/k"), "v");
}

TEST(TcpStore, WaitTimesOutNamingTheKeys) {
  TcpStore server("127.0.0.1", 0, 5.0, true);
  auto t0 = std::chrono::steady_clock::now();
  try {
    server.wait({"never"}, std::chrono::milliseconds(300));
    FAIL() << "wait did not time out";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("never"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
}

TEST(TcpStore, UnreachableMasterFailsWithinTimeoutNamingAddress) {
  int port = free_port();
  auto t0 = std::chrono::steady_clock::now();
  try {
    TcpStore client("127.0.0.1", port, 1.0, false);
    FAIL() << "connected to a port nobody serves";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << e.what();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(s, 0.8);
  EXPECT_LT(s, 3.0);
}

TEST(TcpStore, BusyPortIsAClearError) {
  TcpStore first("127.0.0.1", 0, 5.0, true);
  try {
    TcpStore second("127.0.0.1", first.port(), 5.0, true);
    FAIL() << "two servers on one port";
  } catch (const RuntimeError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("port " + std::to_string(first.port())), std::string::npos) << m;
    EXPECT_NE(m.find("in use"), std::string::npos) << m;
  }
}

TEST(Comm, WorldOfOneNeedsNoNetwork) {
  auto d = init_distributed(WorkerEnv{}, CommBackend::Gloo, 5.0);
  ASSERT_EQ(d.world_size, 1);
  ProcessGroup& g = *d.group;
  EXPECT_EQ(g.size(), 1);
  EXPECT_EQ(g.backend_name(), "gloo");
  std::vector<float> x = {1, 2, 3};
  g.allreduce(x.data(), 3, DType::F32, ReduceOp::Avg);
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  std::vector<float> out(3);
  g.reduce_scatter(x.data(), out.data(), 3, DType::F32, ReduceOp::Sum);
  EXPECT_EQ(out, x);
  std::vector<float> all(3);
  g.allgather(x.data(), all.data(), 3, DType::F32);
  EXPECT_EQ(all, x);
  g.broadcast(x.data(), 3, DType::F32, 0);
  EXPECT_THROW(g.broadcast(x.data(), 3, DType::F32, 1), RuntimeError);
  g.barrier();
  auto sub = g.new_group({0});
  EXPECT_EQ(sub->size(), 1);
  EXPECT_THROW(g.new_group({1}), RuntimeError);
}

TEST(Comm, NcclForHostBuffersIsAClearError) {
  auto store = std::make_shared<LocalStore>();
  try {
    make_process_group(CommBackend::Nccl, 0, 1, store, 5.0, Device::Cpu);
    FAIL() << "nccl for host buffers";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("\"nccl\", but this run's buffers are in host memory"), std::string::npos)
        << e.what();
  }
  // Host buffers under auto are Gloo's even where a GPU is visible.
  EXPECT_EQ(make_process_group(CommBackend::Auto, 0, 1, store, 5.0)->backend_name(), "gloo");
}

TEST(Comm, GpuBuffersWithoutGpuIsAClearError) {
  if (nccl_available()) GTEST_SKIP() << "a GPU is visible; this checks the no-GPU error";
  auto store = std::make_shared<LocalStore>();
  for (CommBackend b : {CommBackend::Nccl, CommBackend::Gloo, CommBackend::Auto}) {
    try {
      make_process_group(b, 0, 1, store, 5.0, Device::Cuda);
      FAIL() << "GPU buffers without a GPU";
    } catch (const RuntimeError& e) {
#ifdef ZT_HAVE_CUDA
      EXPECT_NE(std::string(e.what()).find("no GPU is visible"), std::string::npos) << e.what();
#else
      EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
#endif
    }
  }
}

TEST(Comm, NcclCollectivesOnOneGpu) {
#ifdef ZT_HAVE_CUDA
  if (!nccl_available()) GTEST_SKIP() << "no GPU: the NCCL backend is compiled but not run";
  auto store = std::make_shared<LocalStore>();
  auto g = make_process_group(CommBackend::Auto, 0, 1, store, 30.0, Device::Cuda);
  EXPECT_EQ(g->backend_name(), "nccl");
  std::vector<float> host = {1.5f, -2.0f, 3.0f, 4.0f};
  float* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, 8 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dev, host.data(), 4 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  g->allreduce(dev, 4, DType::F32, ReduceOp::Avg);
  g->allgather(dev, dev + 4, 4, DType::F32);
  g->broadcast(dev, 4, DType::F32, 0);
  g->barrier();
  std::vector<float> back(8);
  ASSERT_EQ(cudaMemcpy(back.data(), dev, 8 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(back[i], host[i]);
    EXPECT_FLOAT_EQ(back[4 + i], host[i]);
  }
  cudaFree(dev);
#else
  GTEST_SKIP() << "built without CUDA: no NCCL backend";
#endif
}

// Waiting on a collective that is still running polls its event (cudaEventQuery: cudaErrorNotReady); that must not
// stay behind as the runtime's last error, which the engines' next kernel-launch check (cudaGetLastError) would
// report as a failed launch. A host function on the legacy stream, which NCCL's stream waits for, keeps the
// collective pending for a while.
TEST(Comm, NcclWaitLeavesNoLaunchError) {
#ifdef ZT_HAVE_CUDA
  if (!nccl_available()) GTEST_SKIP() << "no GPU: the NCCL backend is compiled but not run";
  auto store = std::make_shared<LocalStore>();
  auto g = make_process_group(CommBackend::Auto, 0, 1, store, 30.0, Device::Cuda);
  float* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, 4 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(dev, 0, 4 * sizeof(float)), cudaSuccess);
  auto sleep_200ms = [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(200)); };
  ASSERT_EQ(cudaLaunchHostFunc(cudaStreamLegacy, sleep_200ms, nullptr), cudaSuccess);
  std::shared_ptr<Work> w = g->allreduce_async(dev, 4, DType::F32, ReduceOp::Sum);
  EXPECT_FALSE(w->is_completed());  // the host function is still sleeping
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  w->wait();
  EXPECT_TRUE(w->is_completed());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(dev);
#else
  GTEST_SKIP() << "built without CUDA: no NCCL backend";
#endif
}

// Gloo serving device buffers: the staging logic over real Gloo ranks, with a copier whose "device" is host memory
// (the results must come back through it, and a second round must reuse the staging buffers).
TEST(Comm, HostStagedGroupMatchesTheReference) {
  for (int n : {2, 3}) {
    auto r = run_shell(test::launch_cmd(n, free_port(), "staged"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
    for (int rank = 0; rank < n; ++rank) {
      const std::string tag = "[rank " + std::to_string(rank) + "] rank " + std::to_string(rank) + ": ";
      size_t at = r.output.find(tag);
      ASSERT_NE(at, std::string::npos) << r.output;
      const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
      EXPECT_NE(line.find("staged checks passed"), std::string::npos) << line;
      EXPECT_EQ(line.find(" 0 bytes to host"), std::string::npos) << line;
      EXPECT_EQ(line.find(" 0 to device"), std::string::npos) << line;
      EXPECT_NE(line.find("(0 in the second round)"), std::string::npos) << line;
    }
  }
}

// The same on real GPU buffers, 2 and 3 ranks sharing one GPU (what NCCL refuses).
TEST(Comm, GlooWithPinnedStagingOnGpuBuffers) {
#ifdef ZT_HAVE_CUDA
  if (!nccl_available()) GTEST_SKIP() << "no GPU: Gloo's pinned-host staging of GPU buffers is compiled but not run";
  for (int n : {2, 3}) {
    auto r = run_shell(test::launch_cmd(n, free_port(), "staged_cuda"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("checks passed on GPU buffers through gloo+cuda staging"), std::string::npos) << r.output;
  }
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

class CollectivesOverProcesses : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesOverProcesses, MatchTheLocalReference) {
  int n = GetParam();
  auto r = run_shell(test::launch_cmd(n, free_port(), "check"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (int rank = 0; rank < n; ++rank)
    EXPECT_NE(r.output.find("[rank " + std::to_string(rank) + "] rank " + std::to_string(rank) + ": "),
              std::string::npos)
        << r.output;
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, CollectivesOverProcesses, ::testing::Values(1, 2, 3, 4));

TEST(Rendezvous, WorldSizeMismatchIsReportedByEveryRank) {
  int port = free_port();
  std::string w = test::program("zt_comm_worker");
  std::string common = "ZT_TEST_TIMEOUT_S=10 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " ";
  auto r = run_shell("(" + common + "RANK=0 WORLD_SIZE=2 " + w + " check; echo rank0_rc=$?) & (" + common +
                     "RANK=1 WORLD_SIZE=3 " + w + " check; echo rank1_rc=$?); wait");
  EXPECT_NE(r.output.find("rank0_rc=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank1_rc=1"), std::string::npos) << r.output;
  size_t first = r.output.find("WORLD_SIZE mismatch");
  ASSERT_NE(first, std::string::npos) << r.output;
  EXPECT_NE(r.output.find("WORLD_SIZE mismatch", first + 1), std::string::npos) << "both ranks must say so\n"
                                                                                << r.output;
  EXPECT_LT(r.seconds, 8.0);
}

TEST(Rendezvous, UnreachableMasterEndsWithinTheTimeout) {
  int port = free_port();
  auto r = run_shell("ZT_TEST_TIMEOUT_S=2 RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                     std::to_string(port) + " " + test::program("zt_comm_worker") + " check");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot reach the rendezvous master at 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.output;
  EXPECT_LT(r.seconds, 5.0);
}

TEST(Rendezvous, BusyMasterPortIsNamed) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  auto r = run_shell("ZT_TEST_TIMEOUT_S=2 RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                     std::to_string(port) + " " + test::program("zt_comm_worker") + " check");
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("port " + std::to_string(port) + ": Address already in use"), std::string::npos)
      << r.output;
  EXPECT_LT(r.seconds, 5.0);
}

}  // namespace
}  // namespace zt
