#include "kernels/cuda/matmul_algo_cache.h"

namespace zt::cuda {

size_t MatmulKeyHash::operator()(const MatmulKey& k) const {
  size_t h = 0;
  auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int v : {k.m, k.n, k.k, k.lda, k.ldb, k.ldc, k.dtype, k.epilogue, k.alignment}) mix((uint64_t)(uint32_t)v);
  mix((uint64_t)k.trans_a | (uint64_t)k.trans_b << 1 | (uint64_t)k.beta_zero << 2);
  return h;
}

MatmulAlgo MatmulAlgoCache::get(const MatmulKey& key, const std::function<MatmulAlgo()>& find) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = algos_.find(key);
    if (it != algos_.end()) {
      hits_++;
      return it->second;
    }
    misses_++;
  }
  // Asked outside the lock: two threads missing the same key both ask, and the answers are equivalent.
  MatmulAlgo algo = find();
  std::lock_guard<std::mutex> lock(mutex_);
  return algos_.emplace(key, algo).first->second;
}

size_t MatmulAlgoCache::hits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}

size_t MatmulAlgoCache::misses() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return misses_;
}

size_t MatmulAlgoCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return algos_.size();
}

void MatmulAlgoCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  algos_.clear();
  hits_ = misses_ = 0;
}

}  // namespace zt::cuda
