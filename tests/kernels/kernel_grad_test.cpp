// Finite-difference checks of every CPU kernel's backward, in double precision on odd sizes. The objective is
// sum(out * R) for a fixed random R, so the analytic gradient is backward(dout = R); it is compared with central
// differences of the forward alone. Accumulating outputs are pre-filled with garbage that is subtracted afterwards
// (testing +=), overwriting outputs are pre-filled with garbage that must disappear.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/encoder.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/residual.h"

namespace {

using Vec = std::vector<double>;
using namespace zt::cpu;

constexpr int B = 2, T = 5, C = 12, NH = 3, V = 97;

Vec random_vec(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Compares analytic with central differences of objective() w.r.t. every element of x (perturbed in place).
void expect_matches_fd(const std::string& what, Vec& x, const Vec& analytic, const std::function<double()>& objective,
                       double tol = 1e-6) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  const double eps = 1e-5;
  double max_err = 0, max_ref = 0;
  size_t worst = 0;
  Vec numeric(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double up = objective();
    x[i] = saved - eps;
    const double down = objective();
    x[i] = saved;
    numeric[i] = (up - down) / (2 * eps);
    max_ref = std::max(max_ref, std::fabs(numeric[i]));
  }
  for (size_t i = 0; i < x.size(); i++) {
    const double err = std::fabs(analytic[i] - numeric[i]);
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
  }
  ASSERT_GT(max_ref, 0.0) << what << ": gradient is identically zero, the check would be vacuous";
  EXPECT_LT(max_err / max_ref, tol) << what << ": worst element " << worst << " analytic " << analytic[worst]
                                    << " numeric " << numeric[worst];
}

Vec minus(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); i++) r[i] = a[i] - b[i];
  return r;
}

TEST(KernelGrad, Encoder) {
  std::vector<int32_t> tokens = {3, 96, 3, 0, 50, 7, 7, 96, 1, 3};  // repeats on purpose
  Vec wte = random_vec((size_t)V * C, 1), wpe = random_vec((size_t)T * C, 2), R = random_vec((size_t)B * T * C, 3);
  Vec out((size_t)B * T * C);
  auto objective = [&] {
    encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  const Vec g0_wte = random_vec(wte.size(), 4), g0_wpe = random_vec(wpe.size(), 5);
  Vec dwte = g0_wte, dwpe = g0_wpe;
  encoder_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
  expect_matches_fd("encoder dwte", wte, minus(dwte, g0_wte), objective);
  expect_matches_fd("encoder dwpe", wpe, minus(dwpe, g0_wpe), objective);
}

TEST(KernelGrad, LayerNorm) {
  const int N = B * T;
  Vec inp = random_vec((size_t)N * C, 10, 2.0), w = random_vec(C, 11), b = random_vec(C, 12),
      R = random_vec(inp.size(), 13);
  for (auto& x : inp) x += 3.0;  // a large mean, as on a residual stream
  Vec out(inp.size()), mean(N), rstd(N);
  auto objective = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  objective();
  const Vec g0_inp = random_vec(inp.size(), 14), g0_w = random_vec(C, 15), g0_b = random_vec(C, 16);
  Vec dinp = g0_inp, dw = g0_w, db = g0_b;
  layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_matches_fd("layernorm dinp", inp, minus(dinp, g0_inp), objective);
  expect_matches_fd("layernorm dweight", w, minus(dw, g0_w), objective);
  expect_matches_fd("layernorm dbias", b, minus(db, g0_b), objective);
}

TEST(KernelGrad, MatmulWithBias) {
  const int N = B * T, OC = 7;
  Vec inp = random_vec((size_t)N * C, 20), w = random_vec((size_t)C * OC, 21), b = random_vec(OC, 22),
      R = random_vec((size_t)N * OC, 23);
  Vec out((size_t)N * OC);
  auto objective = [&] {
    matmul_forward(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  const Vec g0_w = random_vec(w.size(), 24), g0_b = random_vec(OC, 25);
  Vec dinp = random_vec(inp.size(), 26), dw = g0_w, db = g0_b;  // dinp garbage: must be overwritten
  matmul_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), N, C, OC);
  expect_matches_fd("matmul dinp", inp, dinp, objective);
  expect_matches_fd("matmul dweight", w, minus(dw, g0_w), objective);
  expect_matches_fd("matmul dbias", b, minus(db, g0_b), objective);
}

TEST(KernelGrad, MatmulTransposed) {
  const int N = B * T;
  Vec inp = random_vec((size_t)N * C, 30), w = random_vec((size_t)V * C, 31), R = random_vec((size_t)N * V, 32);
  Vec out((size_t)N * V);
  auto objective = [&] {
    matmul_transposed_forward(out.data(), inp.data(), w.data(), N, C, V);
    return dot(out, R);
  };
  const Vec g0_w = random_vec(w.size(), 33);
  Vec dinp = random_vec(inp.size(), 34), dw = g0_w;
  matmul_transposed_backward(dinp.data(), dw.data(), R.data(), inp.data(), w.data(), N, C, V);
  expect_matches_fd("matmul_transposed dinp", inp, dinp, objective);
  expect_matches_fd("matmul_transposed dweight", w, minus(dw, g0_w), objective);
}

TEST(KernelGrad, Attention) {
  Vec qkv = random_vec((size_t)B * T * 3 * C, 40), R = random_vec((size_t)B * T * C, 41);
  Vec out((size_t)B * T * C), att((size_t)B * NH * T * T);
  auto objective = [&] {
    attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  objective();
  Vec dqkv = random_vec(qkv.size(), 42);  // garbage: must be overwritten
  attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_matches_fd("attention dqkv", qkv, dqkv, objective);
}

TEST(KernelGrad, AttentionIsCausal) {
  // Changing a later position must not change any earlier output.
  Vec qkv = random_vec((size_t)B * T * 3 * C, 43);
  Vec out1((size_t)B * T * C), out2(out1.size()), att((size_t)B * NH * T * T);
  attention_forward(out1.data(), att.data(), qkv.data(), B, T, C, NH);
  for (int j = 0; j < 3 * C; j++) qkv[(size_t)(T - 1) * 3 * C + j] += 1.0;  // batch 0, last position
  attention_forward(out2.data(), att.data(), qkv.data(), B, T, C, NH);
  for (int i = 0; i < (T - 1) * C; i++) ASSERT_EQ(out1[i], out2[i]) << "element " << i;
  double diff = 0;
  for (int i = (T - 1) * C; i < T * C; i++) diff += std::fabs(out1[i] - out2[i]);
  EXPECT_GT(diff, 0.0);
}

TEST(KernelGrad, Gelu) {
  const int N = B * T * C;
  Vec inp = random_vec(N, 50, 2.0), R = random_vec(N, 51), out(N);
  auto objective = [&] {
    gelu_forward(out.data(), inp.data(), N);
    return dot(out, R);
  };
  Vec dinp = random_vec(N, 52);
  gelu_backward(dinp.data(), inp.data(), R.data(), N);
  expect_matches_fd("gelu dinp", inp, dinp, objective);
  // In place (dinp aliasing dout) gives the same.
  Vec inplace = R;
  gelu_backward(inplace.data(), inp.data(), inplace.data(), N);
  for (int i = 0; i < N; i++) ASSERT_EQ(inplace[i], dinp[i]);
}

TEST(KernelGrad, Residual) {
  const int N = B * T * C;
  Vec a = random_vec(N, 60), b = random_vec(N, 61), R = random_vec(N, 62), out(N);
  auto objective = [&] {
    residual_forward(out.data(), a.data(), b.data(), N);
    return dot(out, R);
  };
  const Vec g0_a = random_vec(N, 63), g0_b = random_vec(N, 64);
  Vec da = g0_a, db = g0_b;
  residual_backward(da.data(), db.data(), R.data(), N);
  expect_matches_fd("residual dinp1", a, minus(da, g0_a), objective);
  expect_matches_fd("residual dinp2", b, minus(db, g0_b), objective);
}

TEST(KernelGrad, SoftmaxCrossEntropy) {
  const int N = B * T;
  std::vector<int32_t> targets = {0, 96, 5, 5, 42, 13, 96, 1, 2, 77};
  Vec logits = random_vec((size_t)N * V, 70, 3.0);
  logits[5] += 80.0;  // a large logit: the stable form must not overflow
  Vec losses(N), lse(N);
  const double scale = 0.75;
  auto objective = [&] {
    return scale * cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N, V);
  };
  const double loss = objective() / scale;
  // Check the mean against a direct formula.
  double ref = 0;
  for (int n = 0; n < N; n++) {
    double m = -1e300;
    for (int v = 0; v < V; v++) m = std::max(m, logits[(size_t)n * V + v]);
    double s = 0;
    for (int v = 0; v < V; v++) s += std::exp(logits[(size_t)n * V + v] - m);
    ref += m + std::log(s) - logits[(size_t)n * V + targets[n]];
  }
  EXPECT_NEAR(loss, ref / N, 1e-12);
  Vec dlogits = random_vec(logits.size(), 71);
  cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), scale / N, N, V);
  expect_matches_fd("cross_entropy dlogits", logits, dlogits, objective);
  // In place (dlogits aliasing logits); lse is refreshed first since the last FD call left it perturbed.
  objective();
  Vec inplace = logits;
  cross_entropy_backward(inplace.data(), inplace.data(), lse.data(), targets.data(), scale / N, N, V);
  for (size_t i = 0; i < inplace.size(); i++) ASSERT_EQ(inplace[i], dlogits[i]);
}

}  // namespace
