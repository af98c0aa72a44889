//===- VQCutoffTest.cpp - vq_cutoff alone ---------------------------------===//
//
// steps/VQCutoff.cpp against recomputation: its output register must be
// exactly the rows whose codes flipped, and some edits must stop there. And
// the certificates it sets up, driven directly towards a flip.
//
//===----------------------------------------------------------------------===//
#include "Kernels.h"
#include "StepHarness.h"
#include "steps/Certificates.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, VQCutoff) {
  Config c = small("opt", "learned");
  c.decoder.vq = {{0, false, 2, 8}, {0, true, 4, 4}, {1, true, 1, 16}};
  StepRuns plain = checkKind(StepKind::VQCutoff, c, kSeeds);
  c.certificates = true; // fresh budgets along the way
  StepRuns certified = checkKind(StepKind::VQCutoff, c, kSeeds);
  EXPECT_GT(plain.checked + certified.checked, 0);
  EXPECT_GT(plain.cutoffRows, 0);  // codes kept: the change stops
  EXPECT_GT(plain.flippedRows, 0); // codes flipped: it goes on
}

namespace {

struct Drive {
  int64_t byNorm = 0, byDirection = 0, flipsAfterRefusal = 0;
};

/// A chain's certificate driven directly: from a reference attention output,
/// steps towards the nearest competing code's side (plus noise), some
/// absorbed by the norm budget and then certified by direction. Whenever
/// certify says the codes stay, the VQ of the linear layer's output (in
/// double, rounded to float: within the rounding the bound allows) must give
/// the reference codes.
void driveTowardsFlips(const Program &p, Drive &counts) {
  Certificates certs;
  certs.build(p, true);
  certs.prepare(1, true);
  Certificate &c = certs.all()[0];
  ASSERT_TRUE(c.directional);
  const Instr &lin = p.instrs[c.linear];
  const Weight &w = p.weights[size_t(lin.weights[0])];
  const float *bias = lin.weights.size() > 1
                          ? p.weights[size_t(lin.weights[1])].ptr()
                          : nullptr;
  const Weight &cb = p.weights[size_t(p.instrs[c.vq].weights[0])];
  int64_t out = w.shape[0], in = w.shape[1], G = c.groups, K = c.codes,
          d = c.codeWidth;
  auto project = [&](const std::vector<double> &o) {
    std::vector<float> y(static_cast<size_t>(out));
    for (int64_t r = 0; r < out; ++r) {
      double s = bias ? bias[r] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        s += double(w.ptr()[r * in + i]) * o[size_t(i)];
      y[size_t(r)] = float(s);
    }
    return y;
  };
  auto quantize = [&](const std::vector<float> &y, float *dist, float *code) {
    for (int64_t g = 0; g < G; ++g)
      code[g] = float(kernels::nearestCode(
          y.data() + g * d, cb.ptr() + g * K * d, K, d, nullptr, nullptr,
          dist ? dist + g * K : nullptr));
  };
  std::mt19937 rng(17);
  std::normal_distribution<double> normal;
  int64_t byNorm = 0, byDirection = 0, flipsAfterRefusal = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<double> o(static_cast<size_t>(in));
    for (double &x : o)
      x = normal(rng);
    std::vector<float> dist(static_cast<size_t>(G * K)),
        codes(static_cast<size_t>(G)), now(static_cast<size_t>(G));
    quantize(project(o), dist.data(), codes.data());
    double norm = 0;
    for (double x : o)
      norm += x * x;
    c.refNorm[0] = std::sqrt(norm);
    certs.setReference(c, 0, 0, dist.data(), codes.data(), c.refNorm[0]);
    // Towards the nearest competitor of group 0 through W, plus noise.
    int64_t j = int64_t(codes[0]), rival = j == 0 ? 1 : 0;
    for (int64_t k = 0; k < K; ++k)
      if (k != j && dist[size_t(k)] < dist[size_t(rival)])
        rival = k;
    std::vector<double> toward(size_t(in), 0.0);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t r = 0; r < d; ++r)
        toward[size_t(i)] +=
            double(w.ptr()[r * in + i]) *
            (double(cb.ptr()[rival * d + r]) - double(cb.ptr()[j * d + r]));
    double step = (trial % 4 + 1) * 0.002 * (1 + trial % 7);
    std::vector<float> before(static_cast<size_t>(in)),
        after(static_cast<size_t>(in));
    for (int s = 0; s < 200; ++s) {
      for (int64_t i = 0; i < in; ++i) {
        before[size_t(i)] = float(o[size_t(i)]);
        o[size_t(i)] = double(float(
            o[size_t(i)] + step * (toward[size_t(i)] + 0.3 * normal(rng))));
        after[size_t(i)] = float(o[size_t(i)]);
      }
      int32_t directional = c.alongEdits[0];
      bool kept = certs.certify(c, 0, 0, after.data(), before.data(), in);
      quantize(project(o), nullptr, now.data());
      if (!kept) {
        flipsAfterRefusal += now != codes;
        break;
      }
      ASSERT_EQ(now, codes) << "trial " << trial << " step " << s;
      (c.alongEdits[0] > directional ? byDirection : byNorm)++;
    }
  }
  counts = {byNorm, byDirection, flipsAfterRefusal};
}

Program directionalProgram() {
  Config cfg = small("opt", "none");
  cfg.decoder.vq = {{0, false, 2, 8}};
  Program p = buildDecoder(cfg.decoder);
  EXPECT_EQ(p.certificateChains.size(), 1u);
  for (CertificateChain &chain : p.certificateChains)
    chain.defer = false;
  return p;
}

} // namespace

TEST(Steps, DirectionalCertificatesNeverKeepAFlippedCode) {
  Drive random, orthogonal;
  Program p = directionalProgram();
  driveTowardsFlips(p, random);
  // With W = I the norm bound is tight for a step straight at a competitor:
  // a budget larger than the margin allows shows as a flipped code.
  Weight &w = p.weights[size_t(
      p.instrs[size_t(p.certificateChains[0].linear)].weights[0])];
  std::fill(w.owned.begin(), w.owned.end(), 0.0f);
  for (int64_t i = 0; i < std::min(w.shape[0], w.shape[1]); ++i)
    w.owned[size_t(i * w.shape[1] + i)] = 1.0f;
  p.certificateChains[0].normBound = spectralNormClaim(w);
  driveTowardsFlips(p, orthogonal);
  for (const Drive *d : {&random, &orthogonal}) {
    std::printf("steps certified by the norm budget %lld, by direction %lld; "
                "codes flipped at the first refusal %lld times\n",
                (long long)d->byNorm, (long long)d->byDirection,
                (long long)d->flipsAfterRefusal);
    EXPECT_GT(d->byNorm, 100);
    EXPECT_GT(d->flipsAfterRefusal, 10); // the bound is near the boundary
  }
  EXPECT_GT(random.byDirection, 100);
}
