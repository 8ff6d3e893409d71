// Token shards and the DataLoader: every shard error, shuffle=false against an independent re-implementation of the
// rule in docs/data.md, shuffle=true disjointness and the multi-rank union property, determinism, state/restore.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/data/data_loader.h"

namespace {

namespace fs = std::filesystem;

class DataDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zt_dataload_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a shard; header fields and the number of token bytes written can be falsified.
  std::string write_shard(const std::string& name, const std::vector<uint16_t>& tokens, int32_t magic = 20240520,
                          int32_t version = 1, int64_t count = -1, int64_t write_tokens = -1) {
    std::string path = (dir_ / name).string();
    int32_t header[256] = {};
    header[0] = magic;
    header[1] = version;
    header[2] = static_cast<int32_t>(count < 0 ? static_cast<int64_t>(tokens.size()) : count);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    size_t n = write_tokens < 0 ? tokens.size() : static_cast<size_t>(write_tokens);
    out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(n * 2));
    return path;
  }

  // Tokens that identify their shard and position: shard k, token i -> k*10000 + i (shards < 10000 tokens).
  std::vector<std::string> numbered_shards(const std::vector<size_t>& sizes) {
    std::vector<std::string> paths;
    for (size_t k = 0; k < sizes.size(); k++) {
      std::vector<uint16_t> t(sizes[k]);
      for (size_t i = 0; i < t.size(); i++) t[i] = static_cast<uint16_t>(k * 10000 + i);
      char name[64];
      std::snprintf(name, sizeof(name), "d_train_%06zu.bin", k);
      paths.push_back(write_shard(name, t));
    }
    return paths;
  }

  std::string pattern() const { return (dir_ / "d_train_*.bin").string(); }

  fs::path dir_;
};

void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const zt::RuntimeError& e) {
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST_F(DataDir, ShardErrors) {
  std::vector<uint16_t> tokens(100, 7);
  std::string bad_magic = write_shard("magic.bin", tokens, 1234);
  expect_error([&] { zt::TokenShard s(bad_magic); }, {bad_magic, "bad magic 1234"});
  std::string bad_version = write_shard("version.bin", tokens, 20240520, 2);
  expect_error([&] { zt::TokenShard s(bad_version); }, {bad_version, "version 2"});
  std::string truncated = write_shard("trunc.bin", tokens, 20240520, 1, 100, 60);
  expect_error([&] { zt::TokenShard s(truncated); }, {truncated, "truncated"});
  std::string empty = write_shard("empty.bin", {});
  expect_error([&] { zt::TokenShard s(empty); }, {empty, "empty"});
  std::string header_only = (dir_ / "short_header.bin").string();
  std::ofstream(header_only) << "abc";
  expect_error([&] { zt::TokenShard s(header_only); }, {header_only, "truncated header"});
  expect_error([&] { zt::TokenShard s((dir_ / "missing.bin").string()); }, {"missing.bin", "cannot open"});
  zt::TokenShard ok(write_shard("ok.bin", tokens));
  EXPECT_EQ(ok.size(), 100u);
  EXPECT_EQ(ok.tokens()[99], 7);
}

TEST_F(DataDir, ShortShardAndBadTokenErrors) {
  std::vector<uint16_t> tokens(33, 1);
  std::string p = write_shard("d_train_000000.bin", tokens);
  // shuffle=false needs B*T+1 = 4*8+1 = 33 tokens: fits; 4*9+1 does not.
  EXPECT_NO_THROW(zt::DataLoader({p}, 4, 8, 0, 1, 1, false, 256));
  expect_error([&] { zt::DataLoader d({p}, 4, 9, 0, 1, 1, false, 256); }, {p, "shorter than one window"});
  // shuffle=true needs T+1: T=32 fits, T=33 does not.
  EXPECT_NO_THROW(zt::DataLoader({p}, 1, 32, 0, 1, 1, true, 256));
  expect_error([&] { zt::DataLoader d({p}, 1, 33, 0, 1, 1, true, 256); }, {p, "shorter than one window"});
  tokens[21] = 300;
  std::string bad = write_shard("d_train_000001.bin", tokens);
  expect_error([&] { zt::DataLoader d({bad}, 1, 8, 0, 1, 1, true, 256); }, {bad, "offset 21", "300"});
  EXPECT_NO_THROW(zt::DataLoader({bad}, 1, 8, 0, 1, 1, true, 301));
}

TEST_F(DataDir, Globs) {
  numbered_shards({50, 50, 50});
  auto paths = zt::expand_shard_patterns({pattern(), (dir_ / "d_train_000001.bin").string()});
  ASSERT_EQ(paths.size(), 3u);  // de-duplicated
  EXPECT_TRUE(std::is_sorted(paths.begin(), paths.end()));
  EXPECT_NE(paths[2].find("000002"), std::string::npos);
  expect_error([&] { zt::expand_shard_patterns({(dir_ / "nothing_*.bin").string()}); }, {"nothing_*.bin"});
}

// The shuffle=false rule of docs/data.md, written independently: returns the start token (shard, offset) of each
// micro-batch of rank r.
std::vector<std::pair<size_t, size_t>> reference_sequential(const std::vector<size_t>& sizes, int B, int T, int r,
                                                            int W, int n_batches) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t shard = 0, b = 0;
  while (static_cast<int>(out.size()) < n_batches) {
    size_t start = (b * W + r) * static_cast<size_t>(B) * T;
    if (start + static_cast<size_t>(B) * T + 1 > sizes[shard]) {
      shard = (shard + 1) % sizes.size();
      b = 0;
      continue;
    }
    out.emplace_back(shard, start);
    b++;
  }
  return out;
}

TEST_F(DataDir, SequentialFollowsTheDocumentedRule) {
  std::vector<size_t> sizes = {200, 97, 333};
  numbered_shards(sizes);
  const int B = 2, T = 8, W = 3;
  for (int r = 0; r < W; r++) {
    zt::DataLoader loader({pattern()}, B, T, r, W, 42, false, 65536);
    auto ref = reference_sequential(sizes, B, T, r, W, 25);
    std::vector<int32_t> x(B * T), y(B * T);
    for (size_t k = 0; k < ref.size(); k++) {
      loader.next_batch(x.data(), y.data());
      for (int i = 0; i < B * T; i++) {
        int32_t expect = static_cast<int32_t>(ref[k].first * 10000 + ref[k].second + i);
        ASSERT_EQ(x[i], expect) << "rank " << r << " batch " << k << " i " << i;
        ASSERT_EQ(y[i], expect + 1);
      }
    }
  }
}

// shuffle=true: the sample id of each sequence (its first token identifies shard and window).
std::vector<int32_t> sample_ids(zt::DataLoader& loader, int B, int T, int n_batches) {
  std::vector<int32_t> ids;
  std::vector<int32_t> x(B * T), y(B * T);
  for (int k = 0; k < n_batches; k++) {
    loader.next_batch(x.data(), y.data());
    for (int b = 0; b < B; b++) {
      for (int t = 1; t < T; t++) EXPECT_EQ(x[b * T + t], x[b * T] + t);  // contiguous windows
      EXPECT_EQ(y[b * T + T - 1], x[b * T] + T);
      EXPECT_EQ(x[b * T] % 10000 % T, 0);  // windows start at multiples of T
      ids.push_back(x[b * T]);
    }
  }
  return ids;
}

TEST_F(DataDir, ShuffleRanksAreDisjointAndUnionIsTheSingleProcessBatch) {
  std::vector<size_t> sizes = {161, 300, 97};  // 20 + 37 + 12 = 69 windows of T=8
  numbered_shards(sizes);
  const int B = 2, T = 8, W = 3;
  const int per_epoch = 69 / W / B;  // 11 micro-batches per rank per epoch
  zt::DataLoader single({pattern()}, B * W, T, 0, 1, 99, true, 65536);
  std::vector<std::unique_ptr<zt::DataLoader>> ranks;
  for (int r = 0; r < W; r++) ranks.push_back(std::make_unique<zt::DataLoader>(std::vector<std::string>{pattern()}, B, T, r, W, 99, true, 65536));
  std::set<int32_t> seen_in_epoch;
  for (int step = 0; step < per_epoch + 3; step++) {
    if (step == per_epoch) seen_in_epoch.clear();
    std::vector<int32_t> single_ids = sample_ids(single, B * W, T, 1);
    std::multiset<int32_t> union_ids;
    for (int r = 0; r < W; r++) {
      for (int32_t id : sample_ids(*ranks[r], B, T, 1)) {
        union_ids.insert(id);
        EXPECT_TRUE(seen_in_epoch.insert(id).second) << "sample " << id << " drawn twice in an epoch";
      }
    }
    EXPECT_EQ(union_ids, std::multiset<int32_t>(single_ids.begin(), single_ids.end())) << "step " << step;
  }
}

TEST_F(DataDir, ShuffleIsDeterministicBySeedAndEpochsDiffer) {
  numbered_shards({400, 400});
  const int B = 4, T = 8;
  zt::DataLoader a({pattern()}, B, T, 0, 1, 5, true, 65536), b({pattern()}, B, T, 0, 1, 5, true, 65536);
  zt::DataLoader c({pattern()}, B, T, 0, 1, 6, true, 65536);
  auto ia = sample_ids(a, B, T, 24), ib = sample_ids(b, B, T, 24), ic = sample_ids(c, B, T, 24);
  EXPECT_EQ(ia, ib);
  EXPECT_NE(ia, ic);
  // 98 windows, 24 batches of 4 per epoch: the second epoch is another permutation of the same windows.
  auto epoch2 = sample_ids(a, B, T, 24);
  EXPECT_NE(ia, epoch2);
  std::set<int32_t> s1(ia.begin(), ia.end()), s2(epoch2.begin(), epoch2.end());
  EXPECT_EQ(s1.size(), 96u);
  EXPECT_EQ(s2.size(), 96u);
  a.reset();
  EXPECT_EQ(sample_ids(a, B, T, 24), ia);
}

void check_restore(const std::string& pattern, bool shuffle) {
  const int B = 2, T = 8;
  zt::DataLoader first({pattern}, B, T, 1, 2, 3, shuffle, 65536);
  std::vector<int32_t> x(B * T), y(B * T);
  for (int k = 0; k < 17; k++) first.next_batch(x.data(), y.data());
  zt::LoaderState saved = first.state();
  std::vector<int32_t> expect;
  for (int k = 0; k < 30; k++) {  // crosses shard and epoch boundaries
    first.next_batch(x.data(), y.data());
    expect.insert(expect.end(), x.begin(), x.end());
  }
  zt::DataLoader resumed({pattern}, B, T, 1, 2, 3, shuffle, 65536);
  resumed.restore(saved);
  std::vector<int32_t> got;
  for (int k = 0; k < 30; k++) {
    resumed.next_batch(x.data(), y.data());
    got.insert(got.end(), x.begin(), x.end());
  }
  EXPECT_EQ(got, expect);
  EXPECT_GT(resumed.state().epoch, saved.epoch);
}

TEST_F(DataDir, RestoreResumesTheSameStream) {
  numbered_shards({150, 90, 120});
  check_restore(pattern(), false);
  check_restore(pattern(), true);
  zt::DataLoader d({pattern()}, 2, 8, 0, 1, 3, false, 65536);
  EXPECT_EQ(d.total_tokens(), 360u);
  zt::LoaderState bad;
  bad.shard = 9;
  EXPECT_THROW(d.restore(bad), zt::RuntimeError);
}

}  // namespace
