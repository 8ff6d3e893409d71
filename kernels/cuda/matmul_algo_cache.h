#pragma once
// The cuBLASLt algorithm chosen by the heuristic, remembered per problem: asking the heuristic costs far more than
// the matmul on small shapes, and the answer depends only on what the key holds. Plain C++ (the algorithm is kept
// as the opaque 64 bytes of cublasLtMatmulAlgo_t), so it is unit-tested on the CPU.
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace zt::cuda {

// Everything the heuristic's answer depends on, in cuBLASLt's column-major terms.
struct MatmulKey {
  int m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int lda = 0, ldb = 0, ldc = 0;
  int dtype = 0;       // cudaDataType_t of A, B, C
  int epilogue = 0;    // cublasLtEpilogue_t
  int alignment = 0;   // smallest pointer alignment in bytes (capped at 16), which bounds the usable kernels
  bool beta_zero = false;
  bool operator==(const MatmulKey& o) const = default;
};

struct MatmulKeyHash {
  size_t operator()(const MatmulKey& k) const;
};

struct MatmulAlgo {
  std::array<uint64_t, 8> data{};  // cublasLtMatmulAlgo_t
  size_t workspace_bytes = 0;
};

class MatmulAlgoCache {
 public:
  // The cached algorithm of key; on a miss calls find() once and keeps its result (a find() that throws leaves
  // nothing behind, so the next call asks again).
  MatmulAlgo get(const MatmulKey& key, const std::function<MatmulAlgo()>& find);
  size_t hits() const;
  size_t misses() const;
  size_t size() const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::unordered_map<MatmulKey, MatmulAlgo, MatmulKeyHash> algos_;
  size_t hits_ = 0, misses_ = 0;
};

}  // namespace zt::cuda
