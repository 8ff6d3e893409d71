// Test helper for the PyTorch parity test: builds a GPT-2 from the given dims, inits it from seed, runs one
// forward + backward on the given tokens and writes, into --out DIR:
//   weights.bin  initial parameters, raw little-endian float32 in flat order
//   grads.bin    gradients after one backward (grad_scale 1), same layout
//   manifest.json {"num_params": N, "loss": L, "params": [{"name", "shape", "offset", "numel", "unit"}, ...]}
// The token file holds 2*B*T int32 (little-endian): the inputs, then the targets.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/model/gpt2.h"

namespace {

void write_floats(const std::string& path, const float* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data), (std::streamsize)(n * sizeof(float)));
  if (!f) throw zt::RuntimeError("zt_model_probe: cannot write " + path);
}

int run(int argc, char** argv) {
  zt::ModelDims d;
  uint64_t seed = 0;
  int B = 0, T = 0;
  bool ckpt = false;
  std::string tokens_path, out_dir;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--ckpt") {
      ckpt = true;
      continue;
    }
    if (i + 1 >= argc) throw zt::ConfigError("zt_model_probe: " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--n_layer")
      d.n_layer = std::stoi(v);
    else if (a == "--n_head")
      d.n_head = std::stoi(v);
    else if (a == "--n_embd")
      d.n_embd = std::stoi(v);
    else if (a == "--vocab_size")
      d.vocab_size = std::stoi(v);
    else if (a == "--block_size")
      d.block_size = std::stoi(v);
    else if (a == "--seed")
      seed = std::stoull(v);
    else if (a == "--B")
      B = std::stoi(v);
    else if (a == "--T")
      T = std::stoi(v);
    else if (a == "--tokens")
      tokens_path = v;
    else if (a == "--out")
      out_dir = v;
    else
      throw zt::ConfigError("zt_model_probe: unknown argument " + a);
  }
  if (B <= 0 || T <= 0 || tokens_path.empty() || out_dir.empty())
    throw zt::ConfigError("zt_model_probe: need --B, --T, --tokens and --out");

  std::vector<int32_t> tok((size_t)2 * B * T);
  std::ifstream tf(tokens_path, std::ios::binary);
  tf.read(reinterpret_cast<char*>(tok.data()), (std::streamsize)(tok.size() * sizeof(int32_t)));
  if (!tf)
    throw zt::RuntimeError("zt_model_probe: cannot read " + std::to_string(tok.size()) + " int32 from " + tokens_path);

  zt::GPT2 model(d, ckpt);
  model.init_weights(seed);
  write_floats(out_dir + "/weights.bin", model.param_data(), model.num_params());
  model.zero_grad();
  const float loss = model.forward(tok.data(), tok.data() + (size_t)B * T, B, T);
  model.backward(1.0f);
  write_floats(out_dir + "/grads.bin", model.grad_data(), model.num_params());

  std::ofstream mf(out_dir + "/manifest.json");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", (double)loss);
  mf << "{\"num_params\": " << model.num_params() << ", \"loss\": " << buf << ", \"params\": [\n";
  const auto& ps = model.params();
  for (size_t i = 0; i < ps.size(); i++) {
    mf << "  {\"name\": \"" << ps[i].name << "\", \"shape\": [";
    for (size_t k = 0; k < ps[i].shape.size(); k++) mf << (k ? ", " : "") << ps[i].shape[k];
    mf << "], \"offset\": " << ps[i].offset << ", \"numel\": " << ps[i].numel << ", \"unit\": " << ps[i].unit
       << ", \"weight_decay\": " << (ps[i].weight_decay ? "true" : "false") << "}"
       << (i + 1 < ps.size() ? ",\n" : "\n");
  }
  mf << "]}\n";
  if (!mf) throw zt::RuntimeError("zt_model_probe: cannot write manifest in " + out_dir);
  std::printf("loss %.9g\n", (double)loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return zt::run_main("zt_model_probe", [&] { return run(argc, argv); }); }
