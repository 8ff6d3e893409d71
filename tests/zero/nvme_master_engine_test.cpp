// offload_optimizer.device = nvme at stages 1-3, fp32 and bf16, in one process (a world of one over Gloo): the fp32
// master lives in its swap file, not in memory. While the engine trains, the rank's master file exists with the
// partition's size and holds exactly the master that training without offload keeps in memory; the engine's
// optimizer bytes count only the staging buffer sets; losses and weights are bit-identical to no offload; the swap
// files go with the engine.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/comm/distributed.h"
#include "engine/zero/zero_engine.h"
#include "offload/io_file.h"
#include "tests/zero/programs/zero_checks.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

struct Variant {
  int stage;
  bool bf16;
};

std::string label(const Variant& v) { return "stage" + std::to_string(v.stage) + (v.bf16 ? "_bf16" : "_fp32"); }
std::string name_of(const ::testing::TestParamInfo<Variant>& info) { return label(info.param); }

Config engine_config(const Variant& v, OffloadDevice where, const std::string& dir) {
  Config cfg;
  cfg.zero.stage = v.stage;
  cfg.bf16 = v.bf16;
  cfg.gradient_clipping = 1.0;
  cfg.optimizer.weight_decay = 0.1;
  cfg.zero.sub_group_size = 3000;  // several sub-groups, rounded to 2048 elements
  cfg.zero.offload_optimizer.device = where;
  cfg.zero.offload_optimizer.nvme_path = dir;
  cfg.zero.offload_optimizer.buffer_count = 3;
  return cfg;
}

std::vector<fs::path> swap_files(const std::string& dir, const std::string& part) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    // zt_swap_<pid>_rank0_<part>_<serial>.bin
    const std::string name = e.path().filename().string(), key = "_rank0_" + part + "_";
    const size_t at = name.find(key);
    if (at == std::string::npos) continue;
    const std::string serial = e.path().stem().string().substr(at + key.size());
    if (!serial.empty() && serial.find_first_not_of("0123456789") == std::string::npos) out.push_back(e.path());
  }
  return out;
}

class NvmeMasterEngineTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    dir_ = std::string(ZT_BINARY_DIR) + "/nvme_master_engine_test_" + label(GetParam());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_P(NvmeMasterEngineTest, MasterLivesInItsSwapFileAndTrainingIsUnchanged) {
  const Variant v = GetParam();
  Distributed d = init_distributed(WorkerEnv{}, CommBackend::Gloo, 30.0);
  const ModelDims dims = zerotest::odd_dims();
  GPT2 ref_model(dims, false), model(dims, false);
  ref_model.init_weights(3);
  model.init_weights(3);
  const Config ref_cfg = engine_config(v, OffloadDevice::None, dir_), cfg = engine_config(v, OffloadDevice::Nvme, dir_);
  {
    std::unique_ptr<ZeroEngine> ref = make_zero_engine(ref_cfg, ref_model, *d.group);
    std::unique_ptr<ZeroEngine> engine = make_zero_engine(cfg, model, *d.group);
    const size_t n = engine->partition_map().partition_numel(), num_params = ref_model.num_params();

    const int B = 2, T = 8;
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> token(0, dims.vocab_size - 1);
    std::vector<int32_t> inputs(B * T), targets(B * T);
    // One optimizer step of both runs on the same batch; the losses must be the same bits.
    auto train_step = [&](int64_t step, const char* when) {
      float losses[2];
      int i = 0;
      for (auto* run : {&ref, &engine}) {
        GPT2& m = run == &ref ? ref_model : model;
        (*run)->begin_step();
        losses[i++] = m.forward(inputs.data(), targets.data(), B, T);
        m.backward((*run)->loss_scale());
        (*run)->end_micro_batch(true);
        (*run)->step(1e-2, step);
      }
      EXPECT_EQ(losses[0], losses[1]) << when << ", step " << step;
    };
    for (int64_t step = 1; step <= 3; ++step) {
      for (auto& t : inputs) t = token(rng);
      for (auto& t : targets) t = token(rng);
      train_step(step, "training");
    }

    // The master is in its swap file, nowhere else: the file holds the partition (padded to 4 KiB blocks) and its
    // contents are the master that training without offload keeps in memory.
    const std::vector<fs::path> master_files = swap_files(dir_, "master");
    ASSERT_EQ(master_files.size(), 1u);
    EXPECT_EQ(fs::file_size(master_files[0]), offload::io_padded_size(n * sizeof(float)));
    EXPECT_EQ(swap_files(dir_, "exp_avg").size(), 1u);
    EXPECT_EQ(swap_files(dir_, "exp_avg_sq").size(), 1u);
    std::vector<float> want(n), on_disk(n), exported(n);
    ref->export_partition("master", want.data());
    engine->export_partition("master", exported.data());
    std::ifstream(master_files[0], std::ios::binary)
        .read(reinterpret_cast<char*>(on_disk.data()), static_cast<std::streamsize>(n * sizeof(float)));
    EXPECT_EQ(on_disk, want);
    EXPECT_EQ(exported, want);

    // Accounting: with the master and Adam's state on NVMe only the staging buffers count as optimizer memory:
    // 3 buffer sets (buffer_count) x (master, m, v) x one 2048-element sub-group.
    const MemoryStats mem = engine->memory(), ref_mem = ref->memory();
    EXPECT_EQ(mem.optimizer_bytes, 3u * 3u * 2048u * sizeof(float));
    const size_t ref_master = (v.stage == 3 && !v.bf16) ? 0 : n * sizeof(float);  // fp32 stage 3: the params
    EXPECT_EQ(ref_mem.optimizer_bytes, ref_master + 2 * n * sizeof(float));
    EXPECT_EQ(mem.param_bytes, ref_mem.param_bytes) << "the working copy is what no offload keeps too";
    EXPECT_EQ(mem.grad_bytes, ref_mem.grad_bytes);

    std::vector<float> full_ref(num_params), full(num_params);
    ref->gather_full_params(full_ref.data());
    engine->gather_full_params(full.data());
    EXPECT_EQ(full, full_ref) << "fp32 master weights";

    // A checkpoint import of the master rewrites the file and the working copy the next step trains from.
    std::vector<float> flat(num_params);
    for (size_t i = 0; i < num_params; ++i) flat[i] = static_cast<float>(static_cast<int>(i % 61) - 30) / 64.0f;
    for (auto* run : {&ref, &engine}) {
      (*run)->import_full("master", flat.data());
      (*run)->finish_import();
    }
    train_step(4, "after importing a master");
    ref->gather_full_params(full_ref.data());
    engine->gather_full_params(full.data());
    EXPECT_EQ(full, full_ref) << "after importing a master";
  }
  EXPECT_TRUE(fs::is_empty(dir_)) << "the swap files go with the engine";
}

INSTANTIATE_TEST_SUITE_P(StagesAndPrecisions, NvmeMasterEngineTest,
                         ::testing::Values(Variant{1, false}, Variant{2, false}, Variant{3, false}, Variant{1, true},
                                           Variant{2, true}, Variant{3, true}),
                         name_of);

}  // namespace
}  // namespace zt
