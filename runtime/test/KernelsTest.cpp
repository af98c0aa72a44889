//===- KernelsTest.cpp - Kernel accuracy and row invariance ---------------===//
//
// Each kernel is checked against a double-precision reference, and for
// bitwise row invariance: a row computed alone, in small batches, in a big
// batch, or with 1 vs 2 threads must give the same bits.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "ExactAttention.h"
#include "Simd.h"
#include "TestUtil.h"
#include "attention/ExactKernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

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

TEST(LinearKernel, ManyRowsEqualOneRowAtATime) {
  // More rows than one task's chunk, in blocks of uneven size: every row
  // has the bits of that row alone, at either thread count.
  std::mt19937 rng(5);
  for (LinearCase c : {LinearCase{768, 64, true}, LinearCase{100, 47, false}}) {
    for (int64_t n : {97, 131}) {
      auto x = randomFloats(size_t(n * c.in), rng);
      auto w = randomFloats(size_t(c.out * c.in), rng);
      auto b = randomFloats(size_t(c.out), rng);
      k::PackedLinear packed;
      k::packLinear(w.data(), c.out, c.in, c.bias ? b.data() : nullptr, packed);
      for (ThreadPool *pool : {static_cast<ThreadPool *>(nullptr), &pool2()}) {
        std::vector<float> all(size_t(n * c.out)), one(size_t(c.out));
        k::linear(x.data(), n, c.in, packed, all.data(), c.out, pool);
        for (int64_t r = 0; r < n; ++r) {
          k::linear(x.data() + r * c.in, 1, c.in, packed, one.data(), c.out,
                    nullptr);
          ASSERT_TRUE(
              bitsEqual(one.data(), all.data() + r * c.out, size_t(c.out)))
              << "row " << r << " of " << n << " in=" << c.in;
        }
      }
    }
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

/// Simd.h's cephesExp, Clamped form, in plain scalar code: `fused` as with
/// FMA hardware (Avx2), else a separate multiply and add (Portable8).
float expClampedSpec(float x, bool fused) {
  auto madd = [&](float a, float b, float c) {
    return fused ? std::fma(a, b, c) : a * b + c;
  };
  float v = x < 88.3762626647949f ? x : 88.3762626647949f; // minps: NaN -> max
  v = v > -88.3762626647949f ? v : -88.3762626647949f;
  float k = std::floor(madd(v, 1.44269504088896341f, 0.5f));
  float r = v - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  p = madd(p, r * r, r) + 1.0f;
  uint32_t bits = uint32_t(int32_t(k) + 127) << 23; // k in [-127, 128]
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

/// Its NonPositive form (the exact attention weights): no FMA, x below -87
/// or NaN gives 0.
float expNonPositiveSpec(float x) {
  if (!(x >= -87.0f))
    return 0.0f;
  float e = std::min(x, 0.0f);
  float k = std::floor(e * 1.44269504088896341f + 0.5f);
  float r = e - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = uint32_t(int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

/// Every lane of every traits struct computes its form's spec bits, for
/// floats spread over every exponent, both signs, infinities and NaN.
TEST(SimdExp, EveryTraitsMatchesItsSpec) {
  using namespace incnn::runtime::simd;
  const float hi = 88.3762626647949f;
  std::vector<float> xs = {0.0f, -0.0f, -87.0f,   -87.00001f, hi,
                           -hi,  NAN,   -NAN,     1e-45f,     -1e-45f,
                           0.5f, -0.5f, INFINITY, -INFINITY};
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) {
    float x;
    uint32_t bits = uint32_t(b);
    std::memcpy(&x, &bits, 4);
    xs.push_back(x);
  }
  while (xs.size() % 8)
    xs.push_back(-1.0f);
  auto same = [](float a, float b) { return std::memcmp(&a, &b, 4) == 0; };
  for (size_t i = 0; i < xs.size(); i += 8) {
    Portable8::VF p =
        cephesExp<Portable8, ExpForm::Clamped>(Portable8::load(xs.data() + i));
#ifdef INCNN_SIMD_AVX2
    float lanes[8], np[8];
    Avx2::store(lanes,
                cephesExp<Avx2, ExpForm::Clamped>(Avx2::load(xs.data() + i)));
    Avx2::store(
        np, cephesExp<Avx2, ExpForm::NonPositive>(Avx2::load(xs.data() + i)));
#endif
    for (int l = 0; l < 8; ++l) {
      float x = xs[i + size_t(l)];
      ASSERT_TRUE(same(p.v[l], expClampedSpec(x, false))) << x;
      ASSERT_TRUE(same(cephesExp<Scalar, ExpForm::NonPositive>(x),
                       expNonPositiveSpec(x)))
          << x;
#ifdef INCNN_SIMD_AVX2
      ASSERT_TRUE(same(lanes[l], expClampedSpec(x, true))) << x;
      ASSERT_TRUE(same(k::expf(x), lanes[l])) << x;
      ASSERT_TRUE(same(np[l], expNonPositiveSpec(x))) << x;
#endif
    }
  }
}

// Deferred attention updates bound a key's weight by exp(x) (1 + 2^-20)
// (+ 2^-126 where the result is subnormal); every traits computes these bits.
TEST(SimdExp, NonPositiveFormIsWithinTheDeferralBound) {
  using namespace incnn::runtime::simd;
  uint32_t hi;
  float limit = -104.0f; // below, the result is 0
  std::memcpy(&hi, &limit, 4);
  for (uint64_t b = 0x80000000u; b <= hi; b += 61) {
    float x;
    uint32_t bits = uint32_t(b);
    std::memcpy(&x, &bits, 4);
    double y = cephesExp<Scalar, ExpForm::NonPositive>(x);
    ASSERT_LE(y, std::exp(double(x)) * (1 + 0x1p-20) + 0x1p-126) << x;
  }
}

/// The deferral bound's exp (Simd.h expUpperBound): above exp(x) by more
/// than glibc's error and less than 2^-38, for doubles spread over every
/// exponent in [-750, 0] and the edges.
TEST(SimdExp, UpperBoundIsAboveExpAndTight) {
  using namespace incnn::runtime::simd;
  std::vector<double> xs = {0.0,
                            -0.0,
                            -0x1p-1074,
                            -1e-300,
                            -0.5 * M_LN2,
                            0.5 * -M_LN2 - 1e-16,
                            -M_LN2,
                            -700.0,
                            -700.0 + 1e-13,
                            -700.0 - 1e-13,
                            -745.0,
                            -1e300,
                            -INFINITY};
  uint64_t lo = 0x8000000000000000ull, hi;
  double limit = -750.0;
  std::memcpy(&hi, &limit, 8);
  for (uint64_t b = lo; b <= hi; b += (hi - lo) / 2000003) {
    double x;
    std::memcpy(&x, &b, 8);
    xs.push_back(x);
  }
  for (size_t i = 0; i < xs.size(); i += 4) {
    D4 x = {};
    for (int l = 0; l < 4; ++l)
      x[l] = xs[std::min(i + size_t(l), xs.size() - 1)];
    D4 y = expUpperBound(x);
    for (int l = 0; l < 4; ++l) {
      double want = std::exp(std::max(x[l], -700.0));
      ASSERT_GE(y[l], want * (1 + 0x1p-50)) << x[l];
      ASSERT_LE(y[l], want * (1 + 0x1p-38)) << x[l];
    }
  }
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

exact::AttentionShape shapeOf(const AttnCase &c, float scale) {
  exact::AttentionShape s;
  s.numHeads = c.H;
  s.numKvHeads = c.Hkv;
  s.headDim = c.hd;
  s.causal = c.causal;
  s.ropeTheta = c.theta;
  s.scale = scale;
  s.valueBound = exact::valueBound(4096);
  return s;
}

TEST(ExactAttention, MatchesReference) {
  std::mt19937 rng(5);
  for (const AttnCase &c : attnCases()) {
    for (int64_t n : {1, 2, 9, 33, 70}) {
      auto q = randomFloats(size_t(n * c.H * c.hd), rng);
      auto kk = randomFloats(size_t(n * c.Hkv * c.hd), rng);
      auto v = randomFloats(size_t(n * c.Hkv * c.hd), rng);
      exact::AttentionShape shape = shapeOf(c, 1.0f / std::sqrt(float(c.hd)));
      std::vector<float> out(q.size());
      exact::AttentionState state;
      ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), n, shape,
                                   out.data(), state, &pool2()));
      Vec want =
          refAttention(Vec(q.begin(), q.end()), Vec(kk.begin(), kk.end()),
                       Vec(v.begin(), v.end()), n, c.H, c.Hkv, c.causal,
                       c.theta, shape.scale);
      // Fixed-point weights (2^-24 resolution) and a polynomial exp.
      EXPECT_LT(maxRelError(out, want), 2e-5)
          << "n=" << n << " H=" << c.H << " hd=" << c.hd;
    }
  }
}

TEST(ExactAttention, RowsAndThreadsDoNotChangeBits) {
  std::mt19937 rng(6);
  for (const AttnCase &c : attnCases()) {
    const int64_t n = 45, qw = c.H * c.hd;
    auto q = randomFloats(size_t(n * qw), rng);
    auto kk = randomFloats(size_t(n * c.Hkv * c.hd), rng);
    auto v = randomFloats(size_t(n * c.Hkv * c.hd), rng);
    exact::AttentionShape shape = shapeOf(c, 0.3f);
    std::vector<float> full(q.size()), other(q.size());
    exact::AttentionState a, b;
    ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), n, shape,
                                 full.data(), a, nullptr));
    ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), n, shape,
                                 other.data(), b, &pool2()));
    EXPECT_TRUE(bitsEqual(full.data(), other.data(), full.size()));
    // Any row alone, from a key panel, gives the same bits and state.
    std::vector<float> qRot(q.size()), kRot(kk.size());
    exact::rotateRows(q.data(), n, c.H, c.hd, c.theta, qRot.data());
    exact::rotateRows(kk.data(), n, c.Hkv, c.hd, c.theta, kRot.data());
    exact::KeyPanel panel;
    ASSERT_TRUE(panel.build(kRot.data(), v.data(), n, shape, nullptr));
    std::vector<float> row(static_cast<size_t>(qw));
    for (int64_t i = 0; i < n; i += 7) {
      ASSERT_TRUE(exact::computeRow(qRot.data() + i * qw, panel,
                                    c.causal ? i + 1 : n, shape, b, i,
                                    row.data()));
      ASSERT_TRUE(bitsEqual(row.data(), full.data() + i * qw, size_t(qw)))
          << "row " << i;
    }
    if (!c.causal)
      continue;
    // Causal: a prefix computed as its own sequence gives the same rows.
    for (int64_t m : {1, 2, 3, 17, 44}) {
      std::vector<float> pre(static_cast<size_t>(m * qw));
      exact::AttentionState s;
      ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), m, shape,
                                   pre.data(), s, m % 2 ? &pool2() : nullptr));
      ASSERT_TRUE(bitsEqual(pre.data(), full.data(), pre.size()))
          << "prefix " << m;
    }
  }
}

/// Random queries, keys and values of n rows for `shape`, and their
/// from-scratch state (`ok` false when refused).
struct RandomAttention {
  std::vector<float> q, k, v;
  exact::AttentionState state;
  bool ok = false;
};
RandomAttention randomAttention(const exact::AttentionShape &shape, int64_t n,
                                std::mt19937 &rng) {
  RandomAttention r;
  r.q = randomFloats(size_t(n * shape.queryWidth()), rng);
  r.k = randomFloats(size_t(n * shape.kvWidth()), rng);
  r.v = randomFloats(size_t(n * shape.kvWidth()), rng);
  std::vector<float> out(r.q.size());
  r.ok = exact::attention(r.q.data(), r.k.data(), r.v.data(), n, shape,
                          out.data(), r.state, nullptr);
  return r;
}

/// Keys and values with rows `rows` replaced by random ones, and the
/// from-scratch outputs over them (empty when refused).
struct Replaced {
  std::vector<float> k, v, want;
};
Replaced replaceKeys(const std::vector<float> &q, const std::vector<float> &k,
                     const std::vector<float> &v,
                     const std::vector<int64_t> &rows, int64_t n,
                     const exact::AttentionShape &shape, std::mt19937 &rng) {
  int64_t kvw = shape.kvWidth();
  Replaced r{k, v, std::vector<float>(q.size())};
  for (int64_t j : rows) {
    auto newK = randomFloats(size_t(kvw), rng),
         newV = randomFloats(size_t(kvw), rng);
    std::copy(newK.begin(), newK.end(), r.k.begin() + j * kvw);
    std::copy(newV.begin(), newV.end(), r.v.begin() + j * kvw);
  }
  exact::AttentionState fresh;
  if (!exact::attention(q.data(), r.k.data(), r.v.data(), n, shape,
                        r.want.data(), fresh, nullptr))
    r.want.clear();
  return r;
}

/// A row after delta terms, finished from its state (`deltaOk`) or, when
/// its shift moved, recomputed from the keys as the engine does: its bits
/// against `want`.
::testing::AssertionResult
rowMatches(const exact::AttentionShape &shape, exact::AttentionState &state,
           const float *query, const std::vector<float> &keys,
           const std::vector<float> &values, int64_t n, int64_t row,
           bool deltaOk, const float *want, int64_t &updated) {
  std::vector<float> out(size_t(shape.queryWidth()));
  if (deltaOk) {
    exact::finishRow(shape, state, row, out.data());
    ++updated;
  } else {
    exact::KeyPanel panel;
    if (!panel.build(keys.data(), values.data(), n, shape, nullptr) ||
        !exact::computeRow(query, panel, shape.causal ? row + 1 : n, shape,
                           state, row, out.data()))
      return ::testing::AssertionFailure() << "recomputing refused";
  }
  if (!bitsEqual(out.data(), want, out.size()))
    return ::testing::AssertionFailure() << "bits differ";
  return ::testing::AssertionSuccess();
}

TEST(ExactAttention, DeltaTermsEqualARecomputation) {
  // Removing key j's term and adding a new key j' gives, bit for bit, the
  // from-scratch state with j' in place of j (or a refusal: the shift moved).
  std::mt19937 rng(8);
  int64_t updated = 0;
  for (const AttnCase &c : attnCases()) {
    const int64_t n = 20, qw = c.H * c.hd, kvw = c.Hkv * c.hd;
    exact::AttentionShape shape = shapeOf(c, 0.5f);
    shape.ropeTheta = 0.0f; // positions fixed: rotation is tested above
    RandomAttention r = randomAttention(shape, n, rng);
    ASSERT_TRUE(r.ok);
    std::vector<float> &q = r.q, &kk = r.k, &v = r.v;
    exact::AttentionState &state = r.state;
    for (int trial = 0; trial < 10; ++trial) {
      int64_t j = int64_t(rng() % uint32_t(n));
      Replaced next = replaceKeys(q, kk, v, {j}, n, shape, rng);
      std::vector<float> &k2 = next.k, &v2 = next.v, &want = next.want;
      ASSERT_FALSE(want.empty());
      const float *newK = k2.data() + j * kvw, *newV = v2.data() + j * kvw;
      // Rows that attend to j, kTermBlock at a time.
      constexpr int B = exact::kTermBlock;
      for (int64_t r0 = c.causal ? j : 0; r0 < n; r0 += B) {
        int64_t rows[B];
        bool use[B], ok[B];
        std::vector<float> qT(size_t(qw * B), 0.0f);
        for (int l = 0; l < B; ++l) {
          rows[l] = std::min(r0 + l, n - 1);
          use[l] = ok[l] = r0 + l < n;
          for (int64_t x = 0; x < qw; ++x)
            qT[size_t(x * B + l)] = q[size_t(rows[l] * qw + x)];
        }
        exact::applyTermToBlock(qT.data(), rows, use, kk.data() + j * kvw,
                                v.data() + j * kvw, shape, state, -1, ok);
        exact::applyTermToBlock(qT.data(), rows, use, newK, newV, shape, state,
                                +1, ok);
        for (int l = 0; l < B; ++l)
          if (use[l])
            ASSERT_TRUE(rowMatches(shape, state, q.data() + rows[l] * qw, k2,
                                   v2, n, rows[l], ok[l],
                                   want.data() + rows[l] * qw, updated))
                << "row " << rows[l] << " key " << j;
      }
      kk = k2;
      v = v2;
    }
  }
  EXPECT_GT(updated, 100); // most rows take the delta path
}

/// Replaces key j (one head of width hd, n rows, row-major inputs) by newK,
/// its value kept, in rows 0 .. kTermBlock - 1 of `state` with one
/// applyTermsToBlock call (the removal passed first or last); `want` gets
/// the outputs of a from-scratch run with the new key.
void replaceKeyInFirstBlock(const std::vector<float> &q,
                            const std::vector<float> &k,
                            const std::vector<float> &v, int64_t n, int64_t hd,
                            int64_t j, const std::vector<float> &newK,
                            bool removalFirst,
                            const exact::AttentionShape &shape,
                            exact::AttentionState &state,
                            std::vector<float> &want, bool *ok) {
  std::fill(ok, ok + exact::kTermBlock, false);
  std::vector<float> k2 = k;
  std::copy(newK.begin(), newK.end(), k2.begin() + j * hd);
  exact::AttentionState fresh;
  want.resize(q.size());
  ASSERT_TRUE(exact::attention(q.data(), k2.data(), v.data(), n, shape,
                               want.data(), fresh, nullptr));
  constexpr int B = exact::kTermBlock;
  int64_t rows[B];
  bool use[2 * B];
  std::vector<float> qT(size_t(hd * B));
  for (int l = 0; l < B; ++l) {
    rows[l] = l;
    ok[l] = use[l] = use[B + l] = true;
    for (int64_t c = 0; c < hd; ++c)
      qT[size_t(c * B + l)] = q[size_t(l * hd + c)];
  }
  std::vector<double> oldV(v.begin() + j * hd, v.begin() + (j + 1) * hd);
  exact::TermRef removal{k.data() + j * hd, oldV.data(), -1},
      addition{newK.data(), oldV.data(), +1};
  exact::TermRef terms[2] = {removalFirst ? removal : addition,
                             removalFirst ? addition : removal};
  exact::applyTermsToBlock(qT.data(), rows, use, terms, 2, shape, state, ok);
}

TEST(ExactAttention, ReplacedTopKeyInItsBucketKeepsTheShift) {
  // Every row's only top key j (score 5.3, shift 6) is replaced by one that
  // scores 5.6: the shift stays 6, so no row may stop for a recompute, even
  // though the engine passes the removal before the addition.
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> small(-0.1f, 0.1f), unit(-1.0f, 1.0f);
  const int64_t n = exact::kTermBlock, hd = 8, j = 3;
  exact::AttentionShape shape = shapeOf({1, 1, hd, false, 0.0f}, 1.0f);
  std::vector<float> q(size_t(n * hd)), k(size_t(n * hd)), v(size_t(n * hd));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < hd; ++c) {
      q[size_t(i * hd + c)] = c == 0 ? 1.0f : small(rng);
      k[size_t(i * hd + c)] = i == j ? (c == 0 ? 5.3f : 0.0f) : unit(rng);
      v[size_t(i * hd + c)] = unit(rng);
    }
  std::vector<float> out(q.size()), want(q.size());
  exact::AttentionState state;
  ASSERT_TRUE(exact::attention(q.data(), k.data(), v.data(), n, shape,
                               out.data(), state, nullptr));
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(state.top[size_t(i)], 1) << "row " << i;
  std::vector<float> newK(k.begin() + j * hd, k.begin() + (j + 1) * hd);
  newK[0] = 5.6f;
  constexpr int B = exact::kTermBlock;
  bool ok[B];
  replaceKeyInFirstBlock(q, k, v, n, hd, j, newK, true, shape, state, want, ok);
  std::vector<float> row(static_cast<size_t>(hd));
  for (int l = 0; l < B; ++l) {
    ASSERT_TRUE(ok[l]) << "row " << l << " stopped";
    exact::finishRow(shape, state, l, row.data());
    EXPECT_TRUE(bitsEqual(row.data(), want.data() + l * hd, size_t(hd)))
        << "row " << l;
  }
}

TEST(ExactAttention, RemovingTheLastTopKeyStopsTheRowOnly) {
  // Rows 0-3 have one top key (j, score 5.3, shift 8: its bucket is (4, 8]),
  // rows 4-7 a second (key t2, score 4.5 for them). Key j is replaced by one
  // scoring 1.0: the first rows' maximum leaves the bucket, so they stop;
  // the others keep their shift and must equal a recomputation.
  std::mt19937 rng(22);
  std::uniform_real_distribution<float> small(-0.1f, 0.1f), unit(-1.0f, 1.0f);
  const int64_t n = exact::kTermBlock, hd = 8, j = 3, t2 = 5;
  exact::AttentionShape shape = shapeOf({1, 1, hd, false, 0.0f}, 1.0f);
  std::vector<float> q(size_t(n * hd)), k(size_t(n * hd)), v(size_t(n * hd));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < hd; ++c) {
      q[size_t(i * hd + c)] = c == 0 ? 1.0f : c == 1 ? float(i >= 4) : 0.0f;
      k[size_t(i * hd + c)] = i == j    ? (c == 0 ? 5.3f : 0.0f)
                              : i == t2 ? (c == 1 ? 4.5f : 0.0f)
                                        : small(rng);
      v[size_t(i * hd + c)] = unit(rng);
    }
  std::vector<float> out(q.size()), want(q.size());
  exact::AttentionState state;
  ASSERT_TRUE(exact::attention(q.data(), k.data(), v.data(), n, shape,
                               out.data(), state, nullptr));
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(state.shift[size_t(i)], 8.0f) << "row " << i;
    ASSERT_EQ(state.top[size_t(i)], i >= 4 ? 2 : 1) << "row " << i;
  }
  std::vector<float> newK(size_t(hd), 0.0f);
  newK[0] = 1.0f;
  constexpr int B = exact::kTermBlock;
  bool ok[B];
  replaceKeyInFirstBlock(q, k, v, n, hd, j, newK, false, shape, state, want,
                         ok);
  std::vector<float> row(static_cast<size_t>(hd));
  for (int l = 0; l < B; ++l) {
    ASSERT_EQ(ok[l], l >= 4) << "row " << l;
    if (!ok[l])
      continue;
    ASSERT_EQ(state.top[size_t(l)], 1) << "row " << l;
    exact::finishRow(shape, state, l, row.data());
    EXPECT_TRUE(bitsEqual(row.data(), want.data() + l * hd, size_t(hd)))
        << "row " << l;
  }
}

TEST(ExactAttention, ContractBreachesAreReported) {
  AttnCase c{1, 1, 4, true, 0.0f};
  exact::AttentionShape shape = shapeOf(c, 1.0f);
  std::vector<float> q(8, 1.0f), k(8, 1.0f), v(8, 1.0f), out(8);
  exact::AttentionState state;
  ASSERT_TRUE(exact::attention(q.data(), k.data(), v.data(), 2, shape,
                               out.data(), state, nullptr));
  std::vector<float> big = q;
  big[5] = 1e30f; // score 1e30 > 2^20
  EXPECT_FALSE(exact::attention(big.data(), k.data(), v.data(), 2, shape,
                                out.data(), state, nullptr));
  big = v;
  big[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(exact::attention(q.data(), k.data(), big.data(), 2, shape,
                                out.data(), state, nullptr));
  big[2] = 2 * shape.valueBound;
  EXPECT_FALSE(exact::attention(q.data(), k.data(), big.data(), 2, shape,
                                out.data(), state, nullptr));
}

/// The exact attention spec for one (row, head), in plain scalar code: the
/// state computeRow must produce.
void specRowHead(const float *qRot, const float *kRot, const float *v,
                 int64_t keyCount, const exact::AttentionShape &shape,
                 int64_t h, float &shift, int32_t &top, int64_t &denom,
                 int64_t *numer) {
  int64_t hd = shape.headDim, kvw = shape.kvWidth(), hk = shape.kvHeadOf(h);
  std::vector<float> s(static_cast<size_t>(keyCount));
  float mx = -INFINITY;
  for (int64_t j = 0; j < keyCount; ++j) {
    s[j] =
        exact::dot(qRot + h * hd, kRot + j * kvw + hk * hd, hd) * shape.scale;
    mx = std::max(mx, s[j]);
  }
  // Buckets of 4 score units; weights scaled by 2^26 (docs/exactness.md).
  shift = std::ceil(mx / 4.0f) * 4.0f + 0.0f;
  top = 0;
  denom = 0;
  std::fill(numer, numer + hd, 0);
  for (int64_t j = 0; j < keyCount; ++j) {
    top += s[j] > shift - 4.0f;
    float w = expNonPositiveSpec(s[j] - shift);
    double P = double(w * 67108864.0f);
    denom += int64_t(std::nearbyint(P));
    for (int64_t c = 0; c < hd; ++c)
      numer[c] += int64_t(std::nearbyint(P * double(v[j * kvw + hk * hd + c])));
  }
}

bool stateEqual(const exact::AttentionState &a,
                const exact::AttentionState &b) {
  auto same = [](const auto &x, const auto &y) {
    return x.size() == y.size() &&
           std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0;
  };
  return same(a.shift, b.shift) && same(a.top, b.top) &&
         same(a.denom, b.denom) && same(a.numer, b.numer);
}

/// The ISAs this build and CPU offer (the baseline first).
std::vector<std::string> kernelIsas() {
  std::string initial = exact::kernelIsa();
  std::vector<std::string> isas;
  for (const char *isa : {"avx2", "scalar", "avx512"})
    if (exact::setKernelIsa(isa))
      isas.push_back(exact::kernelIsa());
  exact::setKernelIsa(initial.c_str());
  return isas;
}

struct IsaScope {
  std::string saved = exact::kernelIsa();
  explicit IsaScope(const std::string &isa) {
    EXPECT_TRUE(exact::setKernelIsa(isa.c_str()));
  }
  ~IsaScope() { exact::setKernelIsa(saved.c_str()); }
};

TEST(LinearKernel, SameBitsOnEveryIsa) {
  // Widths with pairs of full panels, an odd panel and a partial one; row
  // counts with every remainder of the 6-row blocks; more than one k block.
  std::mt19937 rng(3);
  for (LinearCase c : {LinearCase{768, 96, true}, LinearCase{300, 80, false},
                       LinearCase{513, 71, true}, LinearCase{64, 32, true}}) {
    auto w = randomFloats(size_t(c.out * c.in), rng);
    auto b = randomFloats(size_t(c.out), rng);
    k::PackedLinear packed;
    k::packLinear(w.data(), c.out, c.in, c.bias ? b.data() : nullptr, packed);
    for (int64_t n : {1, 5, 6, 11, 40}) {
      auto x = randomFloats(size_t(n * c.in), rng);
      std::vector<float> first;
      for (const std::string &isa : kernelIsas()) {
        IsaScope scope(isa);
        std::vector<float> y(size_t(n * c.out));
        k::linear(x.data(), n, c.in, packed, y.data(), c.out, &pool2());
        if (first.empty())
          first = y;
        else
          EXPECT_TRUE(bitsEqual(first.data(), y.data(), y.size()))
              << isa << " n=" << n << " in=" << c.in << " out=" << c.out;
      }
    }
  }
}

TEST(KernelTable, DotRowsWithinTheirRoundingBoundOnEveryIsa) {
  // Directional certificates bound each dot product's rounding by
  // gamma(m) * sum |a_i x_i| with float's unit roundoff (any order, FMA or
  // not), plus what underflow can add; every row, vector and tail, and
  // products small enough to underflow.
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t rows : {1, 3, 64})
    for (int64_t m : {1, 7, 8, 77, 768})
      for (int64_t numX : {1, 2, 3, 5, 8}) {
        std::vector<float> a(size_t(rows * m)), xs(size_t(numX * m));
        for (float &v : a)
          v = u(rng) * std::exp2(float(int(rng() % 40)) - 20.0f);
        for (float &v : xs)
          v = u(rng) * (rng() % 7 == 0 ? 0x1p-120f : 1.0f);
        std::vector<const float *> x;
        for (int64_t j = 0; j < numX; ++j)
          x.push_back(xs.data() + j * m);
        double gamma = double(m) * 0x1p-24 / (1.0 - double(m) * 0x1p-24);
        double floor = double(2 * m + 1) * 0x1p-150;
        for (const std::string &isa : kernelIsas()) {
          IsaScope scope(isa);
          std::vector<double> out(size_t(numX * rows), NAN);
          exact::detail::kernels().dotRows(a.data(), rows, m, x.data(), numX,
                                           out.data());
          for (int64_t j = 0; j < numX; ++j)
            for (int64_t r = 0; r < rows; ++r) {
              long double exact = 0, magnitude = 0;
              for (int64_t i = 0; i < m; ++i) {
                long double p = (long double)a[size_t(r * m + i)] * x[j][i];
                exact += p;
                magnitude += std::fabs(p);
              }
              EXPECT_LE(
                  std::fabs((long double)out[size_t(j * rows + r)] - exact),
                  gamma * magnitude * 1.0001L + floor)
                  << isa << " rows=" << rows << " m=" << m << " x " << j
                  << " row " << r;
            }
        }
      }
}

/// Random queries [numQueries, qw] times qScale (a spread of weights, some
/// underflowing), keys and values [numKeys, kvw].
struct RandomQkv {
  std::vector<float> q, k, v;
};
RandomQkv randomQkv(std::mt19937 &rng, int64_t numQueries, int64_t numKeys,
                    int64_t qw, int64_t kvw, float qScale) {
  RandomQkv r;
  r.q = randomFloats(size_t(numQueries * qw), rng);
  r.k = randomFloats(size_t(numKeys * kvw), rng);
  r.v = randomFloats(size_t(numKeys * kvw), rng);
  for (float &x : r.q)
    x *= qScale;
  return r;
}

std::vector<AttnCase> longAttnCases() {
  return {{4, 4, 32, true, 0.0f},     {12, 12, 64, true, 0.0f},
          {4, 2, 16, true, 10000.0f}, {3, 1, 6, false, 500.0f},
          {2, 2, 13, true, 0.0f},     {2, 1, 40, false, 0.0f}};
}

TEST(ExactAttention, MatchesScalarSpecOnEveryIsa) {
  std::vector<std::string> isas = kernelIsas();
  std::printf("exact attention kernels: default %s, available:",
              exact::kernelIsa());
  for (const std::string &isa : isas)
    std::printf(" %s", isa.c_str());
  std::printf("\n");
  std::mt19937 rng(11);
  for (const AttnCase &c : longAttnCases()) {
    const int64_t n = c.H >= 12 ? 300 : 1100, qw = c.H * c.hd,
                  kvw = c.Hkv * c.hd;
    auto [q, kk, v] = randomQkv(rng, n, n, qw, kvw, 3.0f);
    exact::AttentionShape shape = shapeOf(c, 1.0f / std::sqrt(float(c.hd)));
    std::vector<float> qRot(q.size()), kRot(kk.size());
    exact::rotateRows(q.data(), n, c.H, c.hd, c.theta, qRot.data());
    exact::rotateRows(kk.data(), n, c.Hkv, c.hd, c.theta, kRot.data());
    std::vector<float> first;
    exact::AttentionState firstState;
    for (const std::string &isa : isas) {
      IsaScope scope(isa);
      std::vector<float> out(q.size());
      exact::AttentionState state;
      ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), n, shape,
                                   out.data(), state, &pool2()));
      if (first.empty()) {
        // Against the scalar spec, on a sample of rows.
        for (int64_t i = 0; i < n; i += 37)
          for (int64_t h = 0; h < c.H; ++h) {
            float shift;
            int32_t top;
            int64_t denom;
            std::vector<int64_t> numer(static_cast<size_t>(c.hd));
            specRowHead(qRot.data() + i * qw, kRot.data(), v.data(),
                        c.causal ? i + 1 : n, shape, h, shift, top, denom,
                        numer.data());
            size_t slot = size_t(i * c.H + h);
            ASSERT_EQ(std::memcmp(&shift, &state.shift[slot], 4), 0)
                << isa << " row " << i;
            ASSERT_EQ(top, state.top[slot]) << isa << " row " << i;
            ASSERT_EQ(denom, state.denom[slot]) << isa << " row " << i;
            ASSERT_EQ(0, std::memcmp(numer.data(),
                                     &state.numer[slot * size_t(c.hd)],
                                     numer.size() * 8))
                << isa << " row " << i;
          }
        first = out;
        firstState = state;
      } else {
        EXPECT_TRUE(bitsEqual(out.data(), first.data(), out.size())) << isa;
        EXPECT_TRUE(stateEqual(state, firstState)) << isa;
      }
      // computeRow and computeRowFromRows on some rows, this ISA.
      exact::KeyPanel panel;
      ASSERT_TRUE(panel.build(kRot.data(), v.data(), n, shape, nullptr));
      std::vector<const float *> kRows(static_cast<size_t>(n)),
          vRows(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        kRows[j] = kRot.data() + j * kvw;
        vRows[j] = v.data() + j * kvw;
      }
      exact::AttentionState single = state, fromRows = state;
      std::vector<float> row(static_cast<size_t>(qw)),
          row2(static_cast<size_t>(qw));
      for (int64_t i : {int64_t(0), n / 3, n - 1}) {
        int64_t count = c.causal ? i + 1 : n;
        ASSERT_TRUE(exact::computeRow(qRot.data() + i * qw, panel, count, shape,
                                      single, i, row.data()));
        ASSERT_TRUE(exact::computeRowFromRows(qRot.data() + i * qw,
                                              kRows.data(), vRows.data(), count,
                                              shape, fromRows, i, row2.data()));
        EXPECT_TRUE(bitsEqual(row.data(), first.data() + i * qw, size_t(qw)))
            << isa << " row " << i;
        EXPECT_TRUE(bitsEqual(row2.data(), first.data() + i * qw, size_t(qw)))
            << isa << " row " << i;
      }
      EXPECT_TRUE(stateEqual(single, firstState)) << isa;
      EXPECT_TRUE(stateEqual(fromRows, firstState)) << isa;
      // Delta terms: remove and re-add key 5 for 8 rows: the state returns.
      constexpr int B = exact::kTermBlock;
      int64_t rows[B];
      bool use[B], ok[B];
      std::vector<float> qT(size_t(qw * B));
      for (int l = 0; l < B; ++l) {
        rows[l] = 5 + 3 * l;
        use[l] = ok[l] = true;
        for (int64_t x = 0; x < qw; ++x)
          qT[size_t(x * B + l)] = qRot[size_t(rows[l] * qw + x)];
      }
      exact::AttentionState delta = state;
      exact::applyTermToBlock(qT.data(), rows, use, kRot.data() + 5 * kvw,
                              v.data() + 5 * kvw, shape, delta, -1, ok);
      exact::applyTermToBlock(qT.data(), rows, use, kRot.data() + 5 * kvw,
                              v.data() + 5 * kvw, shape, delta, +1, ok);
      for (int l = 0; l < B; ++l)
        if (ok[l])
          for (int64_t h = 0; h < c.H; ++h) {
            size_t slot = size_t(rows[l] * c.H + h);
            EXPECT_EQ(delta.denom[slot], state.denom[slot]) << isa;
            EXPECT_EQ(delta.top[slot], state.top[slot]) << isa;
          }
      EXPECT_TRUE(stateEqual(delta, state) ||
                  !std::all_of(ok, ok + B, [](bool b) { return b; }))
          << isa;
    }
  }
}

TEST(ExactAttention, RepeatedKeysEqualEveryKeyOnEveryIsa) {
  // Keys drawn from a few distinct rows (as table rows are): a row over its
  // distinct keys and their counts has the bits of the row over every key.
  std::mt19937 rng(23);
  for (const std::string &isa : kernelIsas()) {
    IsaScope scope(isa);
    for (const AttnCase &c : attnCases()) {
      const int64_t n = 700, distinct = 37, qw = c.H * c.hd, kvw = c.Hkv * c.hd;
      auto [q, kk, v] = randomQkv(rng, n, distinct, qw, kvw, 4.0f);
      exact::AttentionShape shape = shapeOf(c, 1.0f / std::sqrt(float(c.hd)));
      std::vector<const float *> kRows(static_cast<size_t>(n)),
          vRows(static_cast<size_t>(n));
      std::vector<int64_t> which(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        // Skewed: a few keys occur hundreds of times, others once.
        which[size_t(j)] = int64_t(rng() % distinct) * int64_t(rng() % 3) / 2;
        kRows[size_t(j)] = kk.data() + which[size_t(j)] * kvw;
        vRows[size_t(j)] = v.data() + which[size_t(j)] * kvw;
      }
      exact::AttentionState every, grouped;
      every.resize(1, c.H, c.hd);
      grouped.resize(1, c.H, c.hd);
      std::vector<float> a(static_cast<size_t>(qw)), b(static_cast<size_t>(qw));
      for (int64_t i : {int64_t(0), int64_t(1), n / 2, n - 1}) {
        int64_t count = i + 1;
        const float *qi = q.data() + i * qw;
        ASSERT_TRUE(exact::computeRowFromRows(
            qi, kRows.data(), vRows.data(), count, shape, every, 0, a.data()));
        std::vector<const float *> keys, values;
        std::vector<int32_t> counts;
        std::vector<int64_t> at(size_t(distinct), -1);
        for (int64_t j = count - 1; j >= 0; --j) { // any order
          int64_t d = which[size_t(j)];
          if (at[size_t(d)] < 0) {
            at[size_t(d)] = int64_t(keys.size());
            keys.push_back(kRows[size_t(j)]);
            values.push_back(vRows[size_t(j)]);
            counts.push_back(0);
          }
          ++counts[size_t(at[size_t(d)])];
        }
        int64_t numKeys = int64_t(keys.size());
        std::vector<float> keysT;
        exact::transposeDistinctKeys(keys.data(), numKeys, kvw, keysT);
        ASSERT_TRUE(exact::computeRowFromRepeatedKeys(
            qi, values.data(), counts.data(), numKeys, keysT.data(), shape,
            grouped, 0, b.data()));
        EXPECT_TRUE(stateEqual(grouped, every)) << isa << " row " << i;
        EXPECT_TRUE(bitsEqual(a.data(), b.data(), size_t(qw)))
            << isa << " row " << i;
        // The same row one kv head at a time, last first (as threads may).
        exact::AttentionState split;
        split.resize(1, c.H, c.hd);
        std::vector<float> s(static_cast<size_t>(qw));
        for (int64_t g = c.Hkv - 1; g >= 0; --g)
          ASSERT_TRUE(exact::computeRowFromRepeatedKeys(
              qi, values.data(), counts.data(), numKeys, keysT.data(), shape,
              split, 0, s.data(), g, g + 1));
        EXPECT_TRUE(stateEqual(split, every)) << isa << " row " << i;
        EXPECT_TRUE(bitsEqual(a.data(), s.data(), size_t(qw)))
            << isa << " row " << i;
      }
    }
  }
}

TEST(ExactAttention, ManyDeltaTermsAtOnceEqualARecomputationOnEveryIsa) {
  // Six, twenty or twenty-four keys replaced in one applyTermsToBlock call
  // per block: terms that reach several lanes take the ISA's kernel
  // together, a term that reaches one lane (causal, the block's last row)
  // its own pass; head widths with and without a tail past whole vectors.
  // With twenty, all 40 terms' keys are also shared transposed (vectors of
  // terms where the ISA has them), with twenty-four as two ranges that
  // start past the first term and column; groups of terms are followed by
  // the ones left over.
  std::vector<int64_t> twenty, twentyFour;
  for (int64_t j = 1; j < 40; j += 2)
    twenty.push_back(j);
  for (int64_t j = 2; j < 40; ++j)
    if (j % 5 != 0 && j % 7 != 0 && j % 11 != 0)
      twentyFour.push_back(j);
  ASSERT_EQ(twentyFour.size(), 24u);
  for (const std::string &isa : kernelIsas()) {
    IsaScope scope(isa);
    std::mt19937 rng(9);
    int64_t updated = 0, singleLane = 0, laneTerms = 0;
    for (const std::vector<int64_t> &replaced :
         {std::vector<int64_t>{3, 7, 15, 22, 23, 31}, twenty, twentyFour})
      for (const AttnCase &c : attnCases()) {
        const int64_t n = 40, qw = c.H * c.hd, kvw = c.Hkv * c.hd;
        exact::AttentionShape shape = shapeOf(c, 0.5f);
        shape.ropeTheta = 0.0f;
        RandomAttention r = randomAttention(shape, n, rng);
        ASSERT_TRUE(r.ok);
        std::vector<float> &q = r.q, &kk = r.k, &v = r.v;
        exact::AttentionState &state = r.state;
        std::vector<int64_t> keys = replaced;
        Replaced next = replaceKeys(q, kk, v, keys, n, shape, rng);
        std::vector<float> &k2 = next.k, &v2 = next.v, &want = next.want;
        ASSERT_FALSE(want.empty());
        std::vector<std::vector<double>> values;
        std::vector<exact::TermRef> terms;
        std::vector<int64_t> termKey;
        for (int64_t j : keys)
          for (int sign : {-1, +1}) {
            const std::vector<float> &from = sign < 0 ? v : v2;
            values.emplace_back(from.begin() + j * kvw,
                                from.begin() + (j + 1) * kvw);
            termKey.push_back(j);
          }
        for (size_t t = 0; t < values.size(); ++t) {
          const std::vector<float> &k = terms.size() % 2 ? k2 : kk;
          terms.push_back(
              {k.data() + termKey[t] * kvw, values[t].data(), t % 2 ? +1 : -1});
        }
        exact::TermKeys shared;
        if (keys.size() > 6)
          exact::transposeTermKeys(terms.data(), int64_t(terms.size()), shape,
                                   shared);
        laneTerms += shared.ldk;
        // Twenty-four keys: terms [3, 23) and [23, 48), as two lists a block
        // took from their third and first on.
        int64_t numTerms = int64_t(terms.size());
        exact::SharedTerms ranges[2] = {{&shared, 0, 0, numTerms}, {}};
        int numRanges = 1;
        if (keys.size() == 24) {
          ranges[0] = {&shared, 3, 3, 20};
          ranges[1] = {&shared, 23, 23, numTerms - 23};
          numRanges = 2;
        }
        constexpr int B = exact::kTermBlock;
        for (int64_t r0 = 0; r0 < n; r0 += B) {
          int64_t rows[B];
          bool ok[B];
          std::vector<char> use(terms.size() * B);
          std::vector<float> qT(size_t(qw * B), 0.0f);
          for (int l = 0; l < B; ++l) {
            rows[l] = std::min(r0 + l, n - 1);
            ok[l] = r0 + l < n;
            for (int64_t x = 0; x < qw; ++x)
              qT[size_t(x * B + l)] = q[size_t(rows[l] * qw + x)];
          }
          for (size_t t = 0; t < terms.size(); ++t) {
            int reached = 0;
            for (int l = 0; l < B; ++l) {
              use[t * B + size_t(l)] =
                  ok[l] && (!c.causal || rows[l] >= termKey[t]);
              reached += use[t * B + size_t(l)];
            }
            singleLane += reached == 1;
          }
          exact::applyTermsToBlock(
              qT.data(), rows, reinterpret_cast<const bool *>(use.data()),
              terms.data(), numTerms, shape, state, ok, ranges, numRanges);
          for (int l = 0; l < B; ++l)
            if (r0 + l < n)
              ASSERT_TRUE(rowMatches(shape, state, q.data() + rows[l] * qw, k2,
                                     v2, n, rows[l], ok[l],
                                     want.data() + rows[l] * qw, updated))
                  << isa << ": row " << rows[l] << ", head width " << c.hd;
        }
      }
    EXPECT_GT(updated, 450) << isa; // most rows take the delta path
    EXPECT_GT(singleLane, 0) << isa;
    if (isa == "avx512")
      EXPECT_GT(laneTerms, 0) << isa;
  }
}

TEST(ExactAttention, RowsFromPointersMatchComputeRow) {
  std::mt19937 rng(12);
  std::vector<std::string> isas = kernelIsas();
  for (int trial = 0; trial < 24; ++trial) {
    int64_t Hkv = 1 + rng() % 3, H = Hkv * (1 + rng() % 3), hd = 1 + rng() % 70,
            n = 1 + rng() % 700;
    AttnCase c{H, Hkv, hd, rng() % 2 == 0, rng() % 2 ? 10000.0f : 0.0f};
    exact::AttentionShape shape = shapeOf(c, 0.25f + float(rng() % 4));
    const int64_t qw = H * hd, kvw = Hkv * hd;
    auto q = randomFloats(size_t(n * qw), rng);
    auto kk = randomFloats(size_t(n * kvw), rng);
    auto v = randomFloats(size_t(n * kvw), rng);
    std::vector<float> qRot(q.size()), kRot(kk.size());
    exact::rotateRows(q.data(), n, H, hd, c.theta, qRot.data());
    exact::rotateRows(kk.data(), n, Hkv, hd, c.theta, kRot.data());
    // Rows scattered in memory, in a different order than the keys.
    std::vector<std::vector<float>> kCopies(static_cast<size_t>(n)),
        vCopies(static_cast<size_t>(n));
    std::vector<const float *> kRows(static_cast<size_t>(n)),
        vRows(static_cast<size_t>(n));
    for (int64_t j = n - 1; j >= 0; --j) {
      kCopies[j].assign(kRot.begin() + j * kvw, kRot.begin() + (j + 1) * kvw);
      vCopies[j].assign(v.begin() + j * kvw, v.begin() + (j + 1) * kvw);
      kRows[j] = kCopies[j].data();
      vRows[j] = vCopies[j].data();
    }
    exact::KeyPanel panel;
    ASSERT_TRUE(panel.build(kRot.data(), v.data(), n, shape, nullptr));
    for (const std::string &isa : isas) {
      IsaScope scope(isa);
      exact::AttentionState a, b;
      a.resize(n, H, hd);
      b.resize(n, H, hd);
      std::vector<float> ra(static_cast<size_t>(qw)),
          rb(static_cast<size_t>(qw));
      for (int64_t i : {int64_t(0), int64_t(rng() % n), n - 1}) {
        int64_t count = c.causal ? i + 1 : n;
        ASSERT_TRUE(exact::computeRow(qRot.data() + i * qw, panel, count, shape,
                                      a, i, ra.data()));
        ASSERT_TRUE(exact::computeRowFromRows(qRot.data() + i * qw,
                                              kRows.data(), vRows.data(), count,
                                              shape, b, i, rb.data()));
        ASSERT_TRUE(bitsEqual(ra.data(), rb.data(), ra.size()))
            << isa << " trial " << trial << " row " << i;
      }
      ASSERT_TRUE(stateEqual(a, b)) << isa << " trial " << trial;
    }
  }
  // Breaches: a value past the bound, a score past 2^20.
  AttnCase c{1, 1, 4, true, 0.0f};
  exact::AttentionShape shape = shapeOf(c, 1.0f);
  std::vector<float> q(4, 1.0f), k0(4, 1.0f), v0(4, 1.0f), out(4);
  const float *kr[1] = {k0.data()}, *vr[1] = {v0.data()};
  exact::AttentionState state;
  state.resize(1, 1, 4);
  EXPECT_TRUE(exact::computeRowFromRows(q.data(), kr, vr, 1, shape, state, 0,
                                        out.data()));
  v0[3] = 2 * shape.valueBound;
  EXPECT_FALSE(exact::computeRowFromRows(q.data(), kr, vr, 1, shape, state, 0,
                                         out.data()));
  v0[3] = 1.0f;
  q[1] = 1e30f;
  EXPECT_FALSE(exact::computeRowFromRows(q.data(), kr, vr, 1, shape, state, 0,
                                         out.data()));
}

//===----------------------------------------------------------------------===//
// Vector quantization and pooling
//===----------------------------------------------------------------------===//

// Rows that are not consecutive, each over its own key range (causal,
// windowed and bidirectional): the bits of a from-scratch run of the same
// rows.
TEST(ExactAttention, ScatteredRowsMatchAFullRun) {
  std::mt19937 rng(31);
  for (int trial = 0; trial < 24; ++trial) {
    int64_t Hkv = 1 + rng() % 2, H = Hkv * (1 + rng() % 2), hd = 1 + rng() % 40,
            n = 2 + rng() % 500;
    AttnCase c{H, Hkv, hd, rng() % 3 != 0, rng() % 2 ? 10000.0f : 0.0f};
    exact::AttentionShape shape = shapeOf(c, 0.25f + float(rng() % 4));
    if (trial % 3 == 1)
      shape.window = 1 + int64_t(rng() % 40);
    const int64_t qw = H * hd, kvw = Hkv * hd;
    auto q = randomFloats(size_t(n * qw), rng);
    auto kk = randomFloats(size_t(n * kvw), rng);
    auto v = randomFloats(size_t(n * kvw), rng);
    std::vector<float> qRot(q.size()), kRot(kk.size()), want(size_t(n * qw));
    exact::rotateRows(q.data(), n, H, hd, c.theta, qRot.data());
    exact::rotateRows(kk.data(), n, Hkv, hd, c.theta, kRot.data());
    exact::AttentionState full;
    ASSERT_TRUE(exact::attention(q.data(), kk.data(), v.data(), n, shape,
                                 want.data(), full));
    std::vector<const float *> kRows(static_cast<size_t>(n)),
        vRows(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      kRows[size_t(j)] = kRot.data() + j * kvw;
      vRows[size_t(j)] = v.data() + j * kvw;
    }
    // A fifth of the rows, or (every other trial) exactly 3 or 4 of them,
    // the last included: the kernels group a few rows by their own count.
    std::vector<int64_t> rows;
    int64_t few = trial % 4 == 0 ? 3 : trial % 4 == 2 ? 4 : 0;
    if (few) {
      std::vector<int64_t> all(static_cast<size_t>(n - 1));
      std::iota(all.begin(), all.end(), int64_t(0));
      std::shuffle(all.begin(), all.end(), rng);
      rows.assign(all.begin(), all.begin() + std::min<int64_t>(few - 1, n - 1));
      std::sort(rows.begin(), rows.end());
    } else {
      for (int64_t i = 0; i + 1 < n; ++i)
        if (rng() % 5 == 0)
          rows.push_back(i);
    }
    rows.push_back(n - 1);
    std::vector<float> qs, got(rows.size() * size_t(qw));
    for (int64_t i : rows)
      qs.insert(qs.end(), qRot.begin() + i * qw, qRot.begin() + (i + 1) * qw);
    for (const std::string &isa : kernelIsas()) {
      IsaScope scope(isa);
      exact::AttentionState state;
      state.resize(int64_t(rows.size()), H, hd);
      ASSERT_TRUE(exact::computeRowsFromRows(qs.data(), rows, n, kRows.data(),
                                             vRows.data(), shape, state,
                                             got.data()));
      for (size_t t = 0; t < rows.size(); ++t) {
        ASSERT_TRUE(bitsEqual(got.data() + t * size_t(qw),
                              want.data() + rows[t] * qw, size_t(qw)))
            << isa << " trial " << trial << " row " << rows[t];
        exact::AttentionState one;
        one.resize(1, H, hd);
        one.copyRow(state, int64_t(t), 0);
        exact::AttentionState ref;
        ref.resize(1, H, hd);
        ref.copyRow(full, rows[t], 0);
        ASSERT_TRUE(stateEqual(one, ref)) << isa << " row " << rows[t];
      }
    }
  }
}

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

TEST(PositionKernels, EmbedAndLearnedPositions) {
  std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<int32_t> toks = {2, 0};
  std::vector<float> y(4), z(4);
  k::embed(toks.data(), 2, table.data(), 2, nullptr, y.data());
  EXPECT_EQ(y, (std::vector<float>{20, 21, 0, 1}));
  std::vector<float> typed(4), typeRow = {0.5f, -1};
  k::embed(toks.data(), 2, table.data(), 2, typeRow.data(), typed.data());
  EXPECT_EQ(typed, (std::vector<float>{20.5f, 20, 0.5f, 0}));
  k::addPositions(y.data(), 2, 2, table.data(), 0, 1, z.data());
  EXPECT_EQ(z, (std::vector<float>{30, 32, 20, 22}));
}

} // namespace

TEST(ExactAttention, AttendedPairsCountEveryRowsKeys) {
  for (bool causal : {true, false})
    for (int64_t window : {0, 1, 2, 5, 17})
      for (int64_t n : {0, 1, 2, 3, 4, 5, 16, 17, 18, 40}) {
        exact::AttentionShape shape;
        shape.causal = causal;
        shape.window = window;
        uint64_t pairs = 0;
        for (int64_t i = 0; i < n; ++i) {
          int64_t begin, end;
          exact::keyRange(shape, i, n, begin, end);
          for (int64_t j = 0; j < n; ++j) { // the definition, key by key
            bool attends = (!causal || j <= i) &&
                           (window == 0 || (i - j < window && j - i < window));
            EXPECT_EQ(attends, j >= begin && j < end) << i << " " << j;
          }
          pairs += uint64_t(end - begin);
        }
        EXPECT_EQ(exact::attendedPairs(shape, n), pairs)
            << "causal " << causal << " window " << window << " n " << n;
      }
}
