//===- KernelsTest.cpp - Kernel accuracy and row invariance ---------------===//
//
// Each kernel is checked against a double-precision reference, and for
// bitwise row invariance: a row computed alone, in small batches, in a big
// batch, or with 1 vs 2 threads must give the same bits.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::test;
namespace k = incnn::runtime::kernels;

namespace {

ThreadPool &pool2() {
  static ThreadPool pool(2);
  return pool;
}

//===----------------------------------------------------------------------===//
// Linear
//===----------------------------------------------------------------------===//

struct LinearCase {
  int64_t in, out;
  bool bias;
};

TEST(LinearKernel, MatchesReference) {
  std::mt19937 rng(1);
  for (LinearCase c : {LinearCase{1, 1, false}, LinearCase{7, 3, true},
                       LinearCase{16, 16, true}, LinearCase{33, 17, false},
                       LinearCase{255, 31, true}, LinearCase{257, 48, true},
                       LinearCase{600, 70, false}}) {
    for (int64_t n : {1, 5, 6, 13, 97}) {
      auto x = randomFloats(size_t(n * c.in), rng);
      auto w = randomFloats(size_t(c.out * c.in), rng);
      auto b = randomFloats(size_t(c.out), rng);
      k::PackedLinear packed;
      k::packLinear(w.data(), c.out, c.in, c.bias ? b.data() : nullptr, packed);
      std::vector<float> y(static_cast<size_t>(n * c.out));
      k::linear(x.data(), n, c.in, packed, y.data(), c.out, &pool2());
      Vec want = refLinear(x.data(), n, c.in, w.data(), c.out,
                           c.bias ? b.data() : nullptr);
      EXPECT_LT(maxRelError(y, want), 1e-5)
          << "n=" << n << " in=" << c.in << " out=" << c.out;
    }
  }
}

TEST(LinearKernel, RowInvariant) {
  std::mt19937 rng(2);
  for (LinearCase c : {LinearCase{5, 3, true}, LinearCase{61, 19, true},
                       LinearCase{300, 37, false}, LinearCase{513, 40, true}}) {
    const int64_t n = 40;
    auto x = randomFloats(size_t(n * c.in), rng);
    auto w = randomFloats(size_t(c.out * c.in), rng);
    auto b = randomFloats(size_t(c.out), rng);
    k::PackedLinear packed;
    k::packLinear(w.data(), c.out, c.in, c.bias ? b.data() : nullptr, packed);
    std::vector<float> full(static_cast<size_t>(n * c.out));
    k::linear(x.data(), n, c.in, packed, full.data(), c.out, nullptr);
    std::vector<float> two(full.size());
    k::linear(x.data(), n, c.in, packed, two.data(), c.out, &pool2());
    EXPECT_TRUE(bitsEqual(full.data(), two.data(), full.size()))
        << "1 vs 2 threads differ";
    // Every batch size 1..n, starting at every row that fits.
    for (int64_t batch = 1; batch <= n; ++batch) {
      for (int64_t r0 = 0; r0 + batch <= n;
           r0 += std::max<int64_t>(1, batch / 2)) {
        std::vector<float> part(static_cast<size_t>(batch * c.out));
        k::linear(x.data() + r0 * c.in, batch, c.in, packed, part.data(), c.out,
                  batch % 2 ? &pool2() : nullptr);
        ASSERT_TRUE(
            bitsEqual(part.data(), full.data() + r0 * c.out, part.size()))
            << "rows " << r0 << ".." << r0 + batch << " in=" << c.in
            << " out=" << c.out;
      }
    }
    // A row with a different stride (embedded in a wider matrix).
    std::vector<float> wide(static_cast<size_t>(3 * (c.in + 5)));
    std::copy(x.begin() + 7 * c.in, x.begin() + 10 * c.in, wide.begin());
    for (int r = 0; r < 3; ++r)
      std::copy(x.begin() + (7 + r) * c.in, x.begin() + (8 + r) * c.in,
                wide.begin() + r * (c.in + 5));
    std::vector<float> outWide(static_cast<size_t>(3 * (c.out + 3)));
    k::linear(wide.data(), 3, c.in + 5, packed, outWide.data(), c.out + 3,
              nullptr);
    for (int r = 0; r < 3; ++r)
      EXPECT_TRUE(bitsEqual(outWide.data() + r * (c.out + 3),
                            full.data() + (7 + r) * c.out, size_t(c.out)));
  }
}

//===----------------------------------------------------------------------===//
// Norms and elementwise
//===----------------------------------------------------------------------===//

TEST(NormKernels, MatchReferenceAndRowInvariant) {
  std::mt19937 rng(3);
  for (int64_t width : {1, 7, 64, 129}) {
    const int64_t n = 37;
    auto x = randomFloats(size_t(n * width), rng, 3.0f);
    auto g = randomFloats(size_t(width), rng);
    auto b = randomFloats(size_t(width), rng);
    Vec xd(x.begin(), x.end());
    for (bool rms : {false, true}) {
      std::vector<float> y(x.size()), one(static_cast<size_t>(width));
      auto run = [&](const float *src, int64_t rows, float *dst,
                     ThreadPool *pool) {
        if (rms)
          k::rmsNorm(src, rows, width, g.data(), 1e-5f, dst, pool);
        else
          k::layerNorm(src, rows, width, g.data(), b.data(), 1e-5f, dst, pool);
      };
      run(x.data(), n, y.data(), &pool2());
      Vec want =
          refNorm(xd, n, width, g.data(), rms ? nullptr : b.data(), 1e-5, rms);
      EXPECT_LT(maxRelError(y, want), 1e-5) << "width " << width;
      for (int64_t i = 0; i < n; ++i) {
        run(x.data() + i * width, 1, one.data(), nullptr);
        ASSERT_TRUE(bitsEqual(one.data(), y.data() + i * width, size_t(width)));
      }
    }
  }
}

TEST(ElementwiseKernels, MatchReferenceAndPositionInvariant) {
  std::mt19937 rng(4);
  const int64_t count = 20011;
  auto x = randomFloats(size_t(count), rng, 10.0f);
  auto x2 = randomFloats(size_t(count), rng, 10.0f);
  std::vector<float> y(static_cast<size_t>(count));
  auto check = [&](const char *name, auto kernel, auto ref, double tol) {
    kernel(x.data(), count, y.data());
    double err = 0;
    for (int64_t i = 0; i < count; ++i)
      err = std::max(err, std::fabs(y[i] - ref(double(x[i]))) /
                              std::max(1.0, std::fabs(ref(double(x[i])))));
    EXPECT_LE(err, tol) << name;
    // Each element alone, and at a shifted offset, gives the same bits.
    for (int64_t i :
         {int64_t(0), int64_t(5), int64_t(8191), int64_t(8192), count - 1}) {
      float one;
      kernel(x.data() + i, 1, &one);
      EXPECT_TRUE(bitsEqual(&one, &y[i], 1)) << name << " at " << i;
      std::vector<float> part(static_cast<size_t>(count - i));
      kernel(x.data() + i, count - i, part.data());
      EXPECT_TRUE(bitsEqual(part.data(), &y[i], part.size())) << name;
    }
  };
  check(
      "relu",
      [](const float *a, int64_t c, float *o) { k::relu(a, c, o, &pool2()); },
      [](double v) { return std::max(0.0, v); }, 0.0);
  check(
      "gelu",
      [](const float *a, int64_t c, float *o) { k::gelu(a, c, o, &pool2()); },
      [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); },
      1e-6);
  check(
      "silu",
      [](const float *a, int64_t c, float *o) { k::silu(a, c, o, &pool2()); },
      [](double v) { return v / (1 + std::exp(-v)); }, 1e-6);
  k::add(x.data(), x2.data(), count, y.data(), &pool2());
  for (int64_t i = 0; i < count; ++i)
    ASSERT_EQ(y[i], x[i] + x2[i]);
  k::mul(x.data(), x2.data(), count, y.data(), &pool2());
  for (int64_t i = 0; i < count; ++i)
    ASSERT_EQ(y[i], x[i] * x2[i]);
}

TEST(ElementwiseKernels, ExpAccuracy) {
  for (double v = -87.0; v <= 88.0; v += 0.01) {
    double x = double(float(v));
    double want = std::exp(x);
    // Near the bottom of the normal range the final scaling loses bits.
    double tol = x < -80.0 ? 1e-5 : 4e-7;
    EXPECT_NEAR(k::expf(float(x)), want, tol * want) << x;
  }
  EXPECT_EQ(k::expf(-1000.0f), 0.0f);
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

struct AttnCase {
  int64_t H, Hkv, hd;
  bool causal;
  float theta;
};

std::vector<AttnCase> attnCases() {
  return {{2, 2, 8, true, 0.0f},      {4, 2, 16, true, 10000.0f},
          {3, 1, 6, false, 0.0f},     {2, 2, 12, false, 500.0f},
          {4, 4, 64, true, 10000.0f}, {1, 1, 40, true, 0.0f}};
}

TEST(AttentionKernel, MatchesReference) {
  std::mt19937 rng(5);
  for (const AttnCase &c : attnCases()) {
    for (int64_t n : {1, 2, 9, 33, 70}) {
      auto q = randomFloats(size_t(n * c.H * c.hd), rng);
      auto kk = randomFloats(size_t(n * c.Hkv * c.hd), rng);
      auto v = randomFloats(size_t(n * c.Hkv * c.hd), rng);
      k::AttentionParams p{c.H,      c.Hkv,   c.hd,
                           c.causal, c.theta, 1.0f / std::sqrt(float(c.hd))};
      std::vector<float> out(q.size());
      k::attention(q.data(), kk.data(), v.data(), n, p, out.data(), 0, n,
                   &pool2());
      Vec want = refAttention(
          Vec(q.begin(), q.end()), Vec(kk.begin(), kk.end()),
          Vec(v.begin(), v.end()), n, c.H, c.Hkv, c.causal, c.theta, p.scale);
      EXPECT_LT(maxRelError(out, want), 2e-5)
          << "n=" << n << " H=" << c.H << " hd=" << c.hd;
    }
  }
}

TEST(AttentionKernel, RowInvariant) {
  std::mt19937 rng(6);
  for (const AttnCase &c : attnCases()) {
    const int64_t n = 45;
    auto q = randomFloats(size_t(n * c.H * c.hd), rng);
    auto kk = randomFloats(size_t(n * c.Hkv * c.hd), rng);
    auto v = randomFloats(size_t(n * c.Hkv * c.hd), rng);
    k::AttentionParams p{c.H, c.Hkv, c.hd, c.causal, c.theta, 0.3f};
    const int64_t qw = c.H * c.hd;
    std::vector<float> full(q.size()), other(q.size());
    k::attention(q.data(), kk.data(), v.data(), n, p, full.data(), 0, n,
                 nullptr);
    k::attention(q.data(), kk.data(), v.data(), n, p, other.data(), 0, n,
                 &pool2());
    EXPECT_TRUE(bitsEqual(full.data(), other.data(), full.size()));
    // Row ranges of every size compute the same bits.
    for (int64_t b = 0; b < n; b += 4)
      for (int64_t e : {b + 1, b + 2, b + 5, n}) {
        if (e > n)
          continue;
        std::fill(other.begin(), other.end(), -1.0f);
        k::attention(q.data(), kk.data(), v.data(), n, p, other.data(), b, e,
                     e % 2 ? &pool2() : nullptr);
        ASSERT_TRUE(bitsEqual(other.data() + b * qw, full.data() + b * qw,
                              size_t((e - b) * qw)))
            << "rows " << b << ".." << e;
      }
    if (!c.causal)
      continue;
    // Causal: a prefix computed as its own sequence gives the same rows.
    for (int64_t m : {1, 2, 3, 17, 44}) {
      std::vector<float> pre(static_cast<size_t>(m * qw));
      k::attention(q.data(), kk.data(), v.data(), m, p, pre.data(), 0, m,
                   m % 2 ? &pool2() : nullptr);
      ASSERT_TRUE(bitsEqual(pre.data(), full.data(), pre.size()))
          << "prefix " << m;
    }
  }
}

//===----------------------------------------------------------------------===//
// Vector quantization and pooling
//===----------------------------------------------------------------------===//

TEST(VqKernel, NearestCodeAndRowInvariant) {
  std::mt19937 rng(7);
  for (int64_t G : {1, 2, 4}) {
    const int64_t width = 24, K = 13, n = 31, d = width / G;
    auto cb = randomFloats(size_t(G * K * d), rng);
    auto x = randomFloats(size_t(n * width), rng);
    std::vector<float> q(x.size()), codes(size_t(n * G));
    k::vectorQuantize(x.data(), n, width, cb.data(), G, K, q.data(),
                      codes.data(), &pool2());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t g = 0; g < G; ++g) {
        Vec xd(x.begin() + i * width + g * d,
               x.begin() + i * width + g * d + d);
        int64_t want = refNearest(xd.data(), cb.data() + g * K * d, K, d);
        EXPECT_EQ(codes[i * G + g], float(want));
        EXPECT_TRUE(bitsEqual(q.data() + i * width + g * d,
                              cb.data() + (g * K + want) * d, size_t(d)));
      }
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float> q1(static_cast<size_t>(width)),
          c1(static_cast<size_t>(G));
      k::vectorQuantize(x.data() + i * width, 1, width, cb.data(), G, K,
                        q1.data(), c1.data(), nullptr);
      ASSERT_TRUE(bitsEqual(q1.data(), q.data() + i * width, size_t(width)));
      ASSERT_TRUE(bitsEqual(c1.data(), codes.data() + i * G, size_t(G)));
    }
  }
}

TEST(VqKernel, TiesGoToLowestIndex) {
  // Codewords 1, 3, 5 and 6 are identical and nearest.
  const int64_t d = 9, K = 7;
  std::vector<float> cb(static_cast<size_t>(K * d), 5.0f),
      x(static_cast<size_t>(d), 0.5f);
  for (int64_t c : {1, 3, 5, 6})
    std::fill(cb.begin() + c * d, cb.begin() + (c + 1) * d, 1.0f);
  float best, second;
  EXPECT_EQ(k::nearestCode(x.data(), cb.data(), K, d, &best, &second), 1);
  EXPECT_EQ(best, second);
  std::vector<float> q(static_cast<size_t>(d)), code(1);
  k::vectorQuantize(x.data(), 1, d, cb.data(), 1, K, q.data(), code.data());
  EXPECT_EQ(code[0], 1.0f);
}

TEST(PoolKernels, LastAndMean) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  std::vector<float> y(2);
  k::poolLast(x.data(), 3, 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{5, 6}));
  k::poolMean(x.data(), 3, 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{3, 4}));
}

TEST(PositionKernels, EmbedAndLearnedPositions) {
  std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<int32_t> toks = {2, 0};
  std::vector<float> y(4), z(4);
  k::embed(toks.data(), 2, table.data(), 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{20, 21, 0, 1}));
  k::addPositions(y.data(), 2, 2, table.data(), 0, 1, z.data());
  EXPECT_EQ(z, (std::vector<float>{30, 32, 20, 22}));
}

} // namespace
