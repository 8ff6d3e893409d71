// The float kernels agree with the double ones (same inputs rounded to float) to float precision, forward and
// backward, on GPT-2-like sizes large enough to use several threads and BLAS blocking.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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

using namespace zt::cpu;

constexpr int B = 3, T = 17, C = 48, NH = 3, V = 97;

struct Pair {
  std::vector<double> d;
  std::vector<float> f;
  explicit Pair(size_t n, uint32_t seed = 0, double scale = 1.0) : d(n), f(n) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(0.0, scale);
    for (size_t i = 0; i < n; i++) {
      f[i] = (float)nd(rng);
      d[i] = f[i];  // identical inputs
    }
  }
};

void expect_close(const std::string& what, const Pair& p, double tol = 2e-5) {
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < p.d.size(); i++) {
    max_err = std::max(max_err, std::fabs(p.d[i] - (double)p.f[i]));
    max_ref = std::max(max_ref, std::fabs(p.d[i]));
  }
  ASSERT_GT(max_ref, 0.0) << what;
  EXPECT_LT(max_err / max_ref, tol) << what;
}

TEST(KernelPrecision, FloatMatchesDouble) {
  const int N = B * T;
  std::vector<int32_t> tokens(N);
  for (int i = 0; i < N; i++) tokens[i] = (i * 37 + 11) % V;
  Pair wte((size_t)V * C, 1), wpe((size_t)T * C, 2), enc((size_t)N * C);
  encoder_forward(enc.d.data(), tokens.data(), wte.d.data(), wpe.d.data(), B, T, C);
  encoder_forward(enc.f.data(), tokens.data(), wte.f.data(), wpe.f.data(), B, T, C);
  expect_close("encoder_forward", enc);

  Pair lw(C, 3), lb(C, 4), ln((size_t)N * C), mean(N), rstd(N);
  layernorm_forward(ln.d.data(), mean.d.data(), rstd.d.data(), enc.d.data(), lw.d.data(), lb.d.data(), N, C);
  layernorm_forward(ln.f.data(), mean.f.data(), rstd.f.data(), enc.f.data(), lw.f.data(), lb.f.data(), N, C);
  expect_close("layernorm_forward", ln);

  Pair w((size_t)C * 3 * C, 5, 0.2), bias(3 * C, 6), qkv((size_t)N * 3 * C);
  matmul_forward(qkv.d.data(), ln.d.data(), w.d.data(), bias.d.data(), N, C, 3 * C);
  matmul_forward(qkv.f.data(), ln.f.data(), w.f.data(), bias.f.data(), N, C, 3 * C);
  expect_close("matmul_forward", qkv);

  Pair att((size_t)B * NH * T * T), atty((size_t)N * C);
  attention_forward(atty.d.data(), att.d.data(), qkv.d.data(), B, T, C, NH);
  attention_forward(atty.f.data(), att.f.data(), qkv.f.data(), B, T, C, NH);
  expect_close("attention_forward", atty);

  Pair gl((size_t)N * C);
  gelu_forward(gl.d.data(), atty.d.data(), N * C);
  gelu_forward(gl.f.data(), atty.f.data(), N * C);
  expect_close("gelu_forward", gl);

  Pair res((size_t)N * C);
  residual_forward(res.d.data(), gl.d.data(), enc.d.data(), N * C);
  residual_forward(res.f.data(), gl.f.data(), enc.f.data(), N * C);
  expect_close("residual_forward", res);

  Pair logits((size_t)N * V), losses(N), lse(N);
  matmul_transposed_forward(logits.d.data(), res.d.data(), wte.d.data(), N, C, V);
  matmul_transposed_forward(logits.f.data(), res.f.data(), wte.f.data(), N, C, V);
  expect_close("matmul_transposed_forward", logits);
  const double loss_d = cross_entropy_forward(losses.d.data(), lse.d.data(), logits.d.data(), tokens.data(), N, V);
  const float loss_f = cross_entropy_forward(losses.f.data(), lse.f.data(), logits.f.data(), tokens.data(), N, V);
  EXPECT_NEAR(loss_f, loss_d, 1e-5 * std::fabs(loss_d));

  // Backward through the same chain.
  Pair dlogits((size_t)N * V), dres((size_t)N * C), dwte((size_t)V * C);
  cross_entropy_backward(dlogits.d.data(), logits.d.data(), lse.d.data(), tokens.data(), 1.0 / N, N, V);
  cross_entropy_backward(dlogits.f.data(), logits.f.data(), lse.f.data(), tokens.data(), 1.0f / N, N, V);
  expect_close("cross_entropy_backward", dlogits);
  matmul_transposed_backward(dres.d.data(), dwte.d.data(), dlogits.d.data(), res.d.data(), wte.d.data(), N, C, V);
  matmul_transposed_backward(dres.f.data(), dwte.f.data(), dlogits.f.data(), res.f.data(), wte.f.data(), N, C, V);
  expect_close("matmul_transposed_backward dinp", dres);
  expect_close("matmul_transposed_backward dweight", dwte);

  Pair datty((size_t)N * C);
  gelu_backward(datty.d.data(), atty.d.data(), dres.d.data(), N * C);
  gelu_backward(datty.f.data(), atty.f.data(), dres.f.data(), N * C);
  expect_close("gelu_backward", datty);

  Pair dqkv((size_t)N * 3 * C);
  attention_backward(dqkv.d.data(), datty.d.data(), qkv.d.data(), att.d.data(), B, T, C, NH);
  attention_backward(dqkv.f.data(), datty.f.data(), qkv.f.data(), att.f.data(), B, T, C, NH);
  expect_close("attention_backward", dqkv);

  Pair dln((size_t)N * C), dw((size_t)C * 3 * C), db(3 * C);
  matmul_backward(dln.d.data(), dw.d.data(), db.d.data(), dqkv.d.data(), ln.d.data(), w.d.data(), N, C, 3 * C);
  matmul_backward(dln.f.data(), dw.f.data(), db.f.data(), dqkv.f.data(), ln.f.data(), w.f.data(), N, C, 3 * C);
  expect_close("matmul_backward dinp", dln);
  expect_close("matmul_backward dweight", dw);
  expect_close("matmul_backward dbias", db);

  Pair denc((size_t)N * C), dlw(C), dlb(C);
  layernorm_backward(denc.d.data(), dlw.d.data(), dlb.d.data(), dln.d.data(), enc.d.data(), lw.d.data(), mean.d.data(),
                     rstd.d.data(), N, C);
  layernorm_backward(denc.f.data(), dlw.f.data(), dlb.f.data(), dln.f.data(), enc.f.data(), lw.f.data(), mean.f.data(),
                     rstd.f.data(), N, C);
  expect_close("layernorm_backward dinp", denc, 1e-4);
  expect_close("layernorm_backward dweight", dlw);
  expect_close("layernorm_backward dbias", dlb);

  Pair dwte2((size_t)V * C), dwpe((size_t)T * C);
  encoder_backward(dwte2.d.data(), dwpe.d.data(), denc.d.data(), tokens.data(), B, T, C);
  encoder_backward(dwte2.f.data(), dwpe.f.data(), denc.f.data(), tokens.data(), B, T, C);
  expect_close("encoder_backward dwte", dwte2, 1e-4);
  expect_close("encoder_backward dwpe", dwpe, 1e-4);
}

}  // namespace
