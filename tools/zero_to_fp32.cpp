// zero_to_fp32: consolidates a sharded zerotrain checkpoint (any stage, any world size) into fp32 safetensors under
// Hugging Face GPT-2 names, streaming, with no GPU and no config.
//   zero_to_fp32 CHECKPOINT_DIR OUTPUT [--tag TAG] [--max_shard_size 5GB] [--exclude_frozen_parameters] [--no_verify]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/checkpoint/fp32_merge.h"
#include "engine/config/memory_estimate.h"
#include "engine/runtime/progress_bar.h"

namespace {

const char* kUsage =
    "usage: zero_to_fp32 CHECKPOINT_DIR OUTPUT [--tag TAG] [--max_shard_size 5GB] [--exclude_frozen_parameters]\n"
    "                    [--no_verify]\n"
    "  CHECKPOINT_DIR  a save_dir (its 'latest' tag is used, or --tag) or one global_step<N> directory\n"
    "  OUTPUT          a directory (model.safetensors, or shards + model.safetensors.index.json, and config.json)\n"
    "                  or a .safetensors file\n"
    "  --no_verify     skip the shards' CRC-32 check (their sizes and headers are still checked)\n";

int run(int argc, char** argv) {
  std::vector<std::string> pos;
  zt::MergeOptions opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
      if (a != flag) throw zt::ConfigError("unknown option '" + a + "'\n" + kUsage);
      if (i + 1 >= argc) throw zt::ConfigError(flag + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a.rfind("--tag", 0) == 0) {
      opt.tag = value("--tag");
    } else if (a.rfind("--max_shard_size", 0) == 0) {
      const int64_t bytes = zt::parse_byte_size("--max_shard_size", value("--max_shard_size"));
      if (bytes <= 0) throw zt::ConfigError("--max_shard_size must be positive");
      opt.max_shard_bytes = static_cast<uint64_t>(bytes);
    } else if (a == "--exclude_frozen_parameters") {
      // zerotrain trains every parameter: there is nothing frozen to leave out.
    } else if (a == "--no_verify") {
      opt.verify = false;
    } else if (!a.empty() && a[0] == '-') {
      throw zt::ConfigError("unknown option '" + a + "'\n" + kUsage);
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) throw zt::ConfigError(std::string("expected CHECKPOINT_DIR and OUTPUT\n") + kUsage);

  const zt::MergeReport info = zt::inspect_checkpoint(pos[0], opt.tag);
  std::printf("checkpoint %s: ZeRO stage %d, world size %d, %llu parameters in %zu tensors\n", info.tag_dir.c_str(),
              info.stage, info.world_size, static_cast<unsigned long long>(info.num_params), info.num_tensors);
  std::fflush(stdout);
  // Drawn only on a terminal: logs and pipes get the summary lines alone.
  zt::ProgressBar bar(static_cast<int64_t>(info.num_params * 4 >> 20), isatty(STDOUT_FILENO) == 1);
  opt.on_progress = [&](uint64_t done, uint64_t) { bar.update(static_cast<int64_t>(done >> 20), "MB"); };
  const auto t0 = std::chrono::steady_clock::now();
  const zt::MergeReport r = zt::merge_checkpoint_to_fp32(pos[0], pos[1], opt);
  bar.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const std::string& f : r.files) std::printf("wrote %s\n", f.c_str());
  std::printf("merged in %.2f s: read %.1f MB, wrote %.1f MB, %.1f MB/s (read + written)%s\n", secs,
              r.bytes_read / 1e6, r.bytes_written / 1e6,
              (r.bytes_read + r.bytes_written) / 1e6 / (secs > 0 ? secs : 1e-9), opt.verify ? "" : ", not verified");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return zt::run_main("zero_to_fp32", [&] { return run(argc, argv); }); }
