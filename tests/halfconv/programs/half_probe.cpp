// Helper for halfconv_test.py: half_probe IN OUT_BF16 OUT_FP16 converts the float32 values of IN.
#include <cstdio>
#include <vector>

#include "kernels/cpu/half_convert.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: half_probe IN OUT_BF16 OUT_FP16\n");
    return 2;
  }
  FILE* in = std::fopen(argv[1], "rb");
  if (!in) return 1;
  std::vector<float> x;
  float v;
  while (std::fread(&v, sizeof(float), 1, in) == 1) x.push_back(v);
  std::fclose(in);
  std::vector<uint16_t> b(x.size()), h(x.size());
  zt::float_to_bf16_array(x.data(), b.data(), x.size());
  zt::float_to_fp16_array(x.data(), h.data(), x.size());
  FILE* ob = std::fopen(argv[2], "wb");
  FILE* oh = std::fopen(argv[3], "wb");
  if (!ob || !oh) return 1;
  std::fwrite(b.data(), 2, b.size(), ob);
  std::fwrite(h.data(), 2, h.size(), oh);
  std::fclose(ob);
  std::fclose(oh);
  return 0;
}
