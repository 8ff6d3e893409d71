#pragma once
// Splitting a reduction over rows into per-thread column ranges: each thread sums whole columns in row order, so
// the result is the same for any thread count (and bit-identical between runs), with no atomics or scratch.
#include <omp.h>

namespace zt::cpu {

// Calls fn(c0, c1) for disjoint ranges covering [0, C), one per OpenMP thread, in parallel.
template <typename Fn>
void parallel_column_chunks(int C, Fn&& fn) {
#pragma omp parallel
  {
    const int nthreads = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    // Chunks are multiples of 16 columns so that threads do not share cache lines.
    const int blocks = (C + 15) / 16;
    const int per = (blocks + nthreads - 1) / nthreads;
    int c0 = tid * per * 16, c1 = (tid + 1) * per * 16;
    if (c1 > C) c1 = C;
    if (c0 < c1) fn(c0, c1);
  }
}

}  // namespace zt::cpu
