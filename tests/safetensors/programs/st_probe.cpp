// Helper for safetensors_test.py.
//   st_probe write PATH   writes the tensors described below (values i*0.37 - 3.1 for element i, as float)
//   st_probe dump PATH    prints each tensor as one JSON line: {"name", "dtype", "shape", "values"} (floats)
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/base/error.h"
#include "engine/checkpoint/safetensors.h"

int main(int argc, char** argv) {
  try {
    if (argc != 3) {
      std::fprintf(stderr, "usage: st_probe write|dump PATH\n");
      return 2;
    }
    std::string mode = argv[1], path = argv[2];
    if (mode == "write") {
      auto values = [](size_t n) {
        std::vector<float> v(n);
        for (size_t i = 0; i < n; i++) v[i] = static_cast<float>(i) * 0.37f - 3.1f;
        return v;
      };
      auto a = values(6), b = values(10), c = values(3);
      zt::write_safetensors(path, {{"alpha", zt::StDtype::F32, {2, 3}, a.data()},
                                   {"beta", zt::StDtype::BF16, {10}, b.data()},
                                   {"gamma", zt::StDtype::F16, {3, 1}, c.data()}},
                            {{"writer", "st_probe"}});
      return 0;
    }
    zt::SafetensorsFile f(path);
    for (const zt::StTensorInfo& t : f.tensors()) {
      std::printf("{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", t.name.c_str(), zt::st_dtype_name(t.dtype));
      for (size_t i = 0; i < t.shape.size(); i++) std::printf("%s%lld", i ? ", " : "", static_cast<long long>(t.shape[i]));
      std::printf("], \"values\": [");
      auto v = f.read_float(t.name);
      for (size_t i = 0; i < v.size(); i++) std::printf("%s%.9g", i ? ", " : "", static_cast<double>(v[i]));
      std::printf("]}\n");
    }
    for (const auto& [k, v] : f.metadata()) std::printf("{\"metadata\": \"%s\", \"value\": \"%s\"}\n", k.c_str(), v.c_str());
    return 0;
  } catch (const zt::Error& e) {
    std::fprintf(stderr, "st_probe: %s\n", e.what());
    return e.exit_code();
  }
}
