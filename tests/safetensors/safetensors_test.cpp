// safetensors round trips for each dtype, sharded sets, and the corrupt-file errors (each naming file and tensor).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/base/error.h"
#include "engine/checkpoint/safetensors.h"
#include "kernels/cpu/half_convert.h"

namespace {

namespace fs = std::filesystem;

class StDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zt_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(gen);
  return v;
}

float through(zt::StDtype dtype, float x) {
  if (dtype == zt::StDtype::F16) return zt::fp16_to_float(zt::float_to_fp16(x));
  if (dtype == zt::StDtype::BF16) return zt::bf16_to_float(zt::float_to_bf16(x));
  return x;
}

TEST_F(StDir, RoundTripEachDtype) {
  auto a = random_floats(12, 1), b = random_floats(7, 2), c = random_floats(1, 3);
  std::vector<zt::StTensorRef> tensors = {{"z.weight", zt::StDtype::F32, {3, 4}, a.data()},
                                          {"a.bias", zt::StDtype::F16, {7}, b.data()},
                                          {"m.scalar", zt::StDtype::BF16, {}, c.data()}};
  zt::write_safetensors(path("t.safetensors"), tensors, {{"format", "pt"}});
  // The data section starts 8-byte aligned.
  std::ifstream in(path("t.safetensors"), std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  EXPECT_EQ(header_len % 8, 0u);

  zt::SafetensorsFile f(path("t.safetensors"));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "z.weight");  // data in insertion order
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const auto& t : tensors) {
    const zt::StTensorInfo* info = f.find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    std::vector<float> got = f.read_float(t.name);
    ASSERT_EQ(got.size(), info->numel());
    for (size_t i = 0; i < got.size(); i++) EXPECT_EQ(got[i], through(t.dtype, t.data[i])) << t.name << " " << i;
  }
  EXPECT_NE(through(zt::StDtype::BF16, c[0]), c[0]);  // the conversion is really exercised
  EXPECT_THROW(f.read_float("nope"), zt::RuntimeError);
  std::vector<float> wrong(5);
  EXPECT_THROW(f.read_float("a.bias", wrong.data(), wrong.size()), zt::RuntimeError);
}

TEST_F(StDir, ShardedRoundTrip) {
  std::vector<std::vector<float>> data;
  std::vector<zt::StTensorRef> tensors;
  for (int i = 0; i < 5; i++) data.push_back(random_floats(100 + i, 10 + i));
  for (int i = 0; i < 5; i++) {
    tensors.push_back({"layer" + std::to_string(i) + ".w", i % 2 ? zt::StDtype::BF16 : zt::StDtype::F32,
                       {static_cast<int64_t>(data[i].size())}, data[i].data()});
  }
  // 100 floats = 400 bytes (F32) or 200 (BF16): a 700-byte limit gives 3 files.
  auto written = zt::write_safetensors_sharded(dir_.string(), tensors, 700);
  ASSERT_EQ(written.size(), 4u);
  EXPECT_TRUE(fs::exists(path("model-00001-of-00003.safetensors")));
  EXPECT_TRUE(fs::exists(path("model.safetensors.index.json")));
  zt::SafetensorsSet set(dir_.string());
  EXPECT_EQ(set.num_files(), 3u);
  ASSERT_EQ(set.names().size(), 5u);
  for (const auto& t : tensors) {
    auto got = set.read_float(t.name);
    ASSERT_EQ(got.size(), static_cast<size_t>(t.shape[0]));
    for (size_t i = 0; i < got.size(); i++) ASSERT_EQ(got[i], through(t.dtype, t.data[i]));
  }
  // One shard: a plain model.safetensors.
  fs::path single = dir_ / "single";
  fs::create_directories(single);
  auto one = zt::write_safetensors_sharded(single.string(), tensors, 1 << 20);
  ASSERT_EQ(one.size(), 1u);
  zt::SafetensorsSet set1(single.string());
  EXPECT_EQ(set1.num_files(), 1u);
  EXPECT_EQ(set1.read_float("layer3.w"), set.read_float("layer3.w"));
}

void write_raw(const std::string& p, const std::string& header, size_t data_bytes, int64_t header_len = -1) {
  std::ofstream out(p, std::ios::binary);
  uint64_t len = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header;
  std::string data(data_bytes, '\0');
  out << data;
}

void expect_error(const std::string& p, const std::vector<std::string>& needles) {
  try {
    zt::SafetensorsFile f(p);
    ADD_FAILURE() << "no error for " << p;
  } catch (const zt::RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST_F(StDir, CorruptFilesAreErrorsNamingFileAndTensor) {
  std::string good = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  write_raw(path("ok.safetensors"), good, 8);
  EXPECT_NO_THROW(zt::SafetensorsFile(path("ok.safetensors")));

  write_raw(path("json.safetensors"), R"({"w":{"dtype":"F32",)", 8);
  expect_error(path("json.safetensors"), {"corrupt JSON header"});
  write_raw(path("len.safetensors"), good, 8, 1000);
  expect_error(path("len.safetensors"), {"header length 1000"});
  write_raw(path("trunc.safetensors"), good, 4);
  expect_error(path("trunc.safetensors"), {"'w'", "out of range"});
  write_raw(path("range.safetensors"), R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8);
  expect_error(path("range.safetensors"), {"'w'", "out of range"});
  write_raw(path("size.safetensors"), R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8);
  expect_error(path("size.safetensors"), {"'w'", "need 4"});
  write_raw(path("dtype.safetensors"), R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8);
  expect_error(path("dtype.safetensors"), {"'w'", "I64"});
  write_raw(path("overlap.safetensors"),
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            8);
  expect_error(path("overlap.safetensors"), {"overlaps"});
  { std::ofstream(path("tiny.safetensors")) << "abc"; }
  expect_error(path("tiny.safetensors"), {"truncated"});
}

TEST_F(StDir, WriterChecksOrderAndCount) {
  std::vector<float> x(4, 1.0f);
  zt::SafetensorsWriter w(path("w.safetensors"), {{"a", zt::StDtype::F32, {4}}, {"b", zt::StDtype::F16, {2, 2}}});
  EXPECT_THROW(w.write("b", x.data(), 4), zt::RuntimeError);
  w.write("a", x.data(), 4);
  EXPECT_THROW(w.write("b", x.data(), 3), zt::RuntimeError);
  EXPECT_THROW(w.close(), zt::RuntimeError);  // b never written
}

}  // namespace
