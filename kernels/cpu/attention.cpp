#include "kernels/cpu/attention.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

// Dot products over the head dimension use `omp simd reduction` so that they vectorize (strict IEEE order would
// forbid it); the order is still fixed by the code, so results stay deterministic.

namespace zt::cpu {

template <typename Scalar>
void attention_forward(Scalar* out, Scalar* att, const Scalar* qkv, int B, int T, int C, int NH) {
  const int hd = C / NH;
  const int C3 = 3 * C;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const Scalar* base = qkv + (size_t)b * T * C3 + h * hd;
      Scalar* att_bh = att + ((size_t)b * NH + h) * T * T;
      for (int t = 0; t < T; t++) {
        const Scalar* q = base + (size_t)t * C3;
        Scalar* row = att_bh + (size_t)t * T;
        Scalar maxv = -INFINITY;
        for (int t2 = 0; t2 <= t; t2++) {
          const Scalar* k = base + (size_t)t2 * C3 + C;
          Scalar s = 0;
#pragma omp simd reduction(+ : s)
          for (int i = 0; i < hd; i++) s += q[i] * k[i];
          s *= scale;
          row[t2] = s;
          if (s > maxv) maxv = s;
        }
        Scalar sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const Scalar e = std::exp(row[t2] - maxv);
          row[t2] = e;
          sum += e;
        }
        const Scalar inv = Scalar(1) / sum;
        for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
        Scalar* o = out + ((size_t)b * T + t) * C + h * hd;
        for (int i = 0; i < hd; i++) o[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const Scalar* v = base + (size_t)t2 * C3 + 2 * C;
          const Scalar a = row[t2];
          for (int i = 0; i < hd; i++) o[i] += a * v[i];
        }
      }
    }
  }
}

template <typename Scalar>
void attention_backward(Scalar* dqkv, const Scalar* dout, const Scalar* qkv, const Scalar* att, int B, int T, int C,
                        int NH) {
  const int hd = C / NH;
  const int C3 = 3 * C;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hd));
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      std::vector<Scalar> datt(T);
      const Scalar* base = qkv + (size_t)b * T * C3 + h * hd;
      Scalar* dbase = dqkv + (size_t)b * T * C3 + h * hd;
      for (int t = 0; t < T; t++) {
        Scalar* d = dbase + (size_t)t * C3;
        std::memset(d, 0, sizeof(Scalar) * hd);
        std::memset(d + C, 0, sizeof(Scalar) * hd);
        std::memset(d + 2 * C, 0, sizeof(Scalar) * hd);
      }
      const Scalar* att_bh = att + ((size_t)b * NH + h) * T * T;
      for (int t = 0; t < T; t++) {
        const Scalar* row = att_bh + (size_t)t * T;
        const Scalar* dy = dout + ((size_t)b * T + t) * C + h * hd;
        // out = sum_t2 att[t2] v[t2]  ->  datt[t2] = dy . v[t2],  dv[t2] += att[t2] dy
        Scalar dot_att_datt = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const Scalar* v = base + (size_t)t2 * C3 + 2 * C;
          Scalar* dv = dbase + (size_t)t2 * C3 + 2 * C;
          Scalar s = 0;
#pragma omp simd reduction(+ : s)
          for (int i = 0; i < hd; i++) {
            s += dy[i] * v[i];
            dv[i] += row[t2] * dy[i];
          }
          datt[t2] = s;
          dot_att_datt += row[t2] * s;
        }
        // softmax backward: dscore = att * (datt - sum(att * datt)); score = scale * q . k
        const Scalar* q = base + (size_t)t * C3;
        Scalar* dq = dbase + (size_t)t * C3;
        for (int t2 = 0; t2 <= t; t2++) {
          const Scalar dscore = row[t2] * (datt[t2] - dot_att_datt) * scale;
          const Scalar* k = base + (size_t)t2 * C3 + C;
          Scalar* dk = dbase + (size_t)t2 * C3 + C;
          for (int i = 0; i < hd; i++) {
            dq[i] += dscore * k[i];
            dk[i] += dscore * q[i];
          }
        }
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int);
template void attention_forward<double>(double*, double*, const double*, int, int, int, int);
template void attention_backward<float>(float*, const float*, const float*, const float*, int, int, int, int);
template void attention_backward<double>(double*, const double*, const double*, const double*, int, int, int, int);

}  // namespace zt::cpu
