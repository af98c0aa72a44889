//===- AttentionDeferTest.cpp - deferred attention rows over many edits ---===//
//
// steps/AttentionDefer.cpp across edits: an engine whose certificate chains
// defer is edited many times and, after every edit, compared with a
// from-scratch engine on the same tokens: the outputs bit for bit, every row
// that is not stale with the same accumulators, and every stale row with the
// same shift and lower bounds that hold, and no budget above its row's
// margin at the from-scratch VQ input. Rows must go stale and be caught up
// (a stale row that took delta terms without catching up first would fail
// the accumulator check the edit after).
//
//===----------------------------------------------------------------------===//
#include "engine/EditPlan.h"
#include "engine/Engine.h"

#include "ProgramBuilder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

using namespace incnn::runtime;

namespace {

struct Counts {
  int64_t stale = 0, caughtUp = 0, edits = 0;
};

std::vector<int32_t> randomTokens(std::mt19937 &rng, int64_t n, int32_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t &x : t)
    x = int32_t(rng() % uint32_t(vocab));
  return t;
}

/// One random single-token replace, insert or delete.
TokenEdit randomEdit(std::mt19937 &rng, int64_t n, int32_t vocab) {
  int32_t token = int32_t(rng() % uint32_t(vocab));
  switch (rng() % 3) {
  case 0:
    return TokenEdit::replace(int64_t(rng() % uint64_t(n)), {token});
  case 1:
    return TokenEdit::insert(int64_t(rng() % uint64_t(n + 1)), {token});
  default:
    return TokenEdit::erase(int64_t(rng() % uint64_t(n)), 1);
  }
}

/// The state of `e` against a from-scratch engine on its tokens.
void compareStates(const Program &p, Engine &e, const std::string &where,
                   std::vector<std::vector<char>> &wasStale, Counts &counts) {
  Engine fresh(p, EngineOptions{1, true, true});
  fresh.tokens = e.tokens;
  fresh.run(nullptr);
  ASSERT_EQ(e.output(), fresh.output()) << where;
  StepContext &ctx = e.context();
  size_t chain = 0;
  for (const CertificateChain &cc : p.certificateChains) {
    size_t index = size_t(cc.attention);
    const Certificate *cert = ctx.certificates.ofAttention(index);
    ASSERT_TRUE(cert && cert->defer);
    const exact::AttentionState &got = ctx.attention(index),
                                &want = fresh.context().attention(index);
    int64_t H = want.numHeads, hd = want.headDim, n = int64_t(e.tokens.size());
    std::vector<char> stale(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t g = ctx.slotOf()[size_t(i)];
      for (int64_t h = 0; h < H; ++h) {
        size_t at = size_t(g * H + h), ref = size_t(i * H + h);
        ASSERT_EQ(got.shift[at], want.shift[ref]) << where << " row " << i;
        if (cert->stale(i)) {
          ASSERT_LE(cert->lowDenom[ref], double(want.denom[ref]))
              << where << " row " << i;
          ASSERT_LE(cert->lowTop[ref], want.top[ref]) << where << " row " << i;
          continue;
        }
        ASSERT_EQ(got.denom[at], want.denom[ref]) << where << " row " << i;
        ASSERT_EQ(got.top[at], want.top[ref]) << where << " row " << i;
        for (int64_t c = 0; c < hd; ++c)
          ASSERT_EQ(got.numer[at * size_t(hd) + size_t(c)],
                    want.numer[ref * size_t(hd) + size_t(c)])
              << where << " row " << i;
      }
      stale[size_t(i)] = cert->stale(i);
      counts.stale += stale[size_t(i)];
      // A budget promises that the VQ input, now where a from-scratch run
      // puts it, may still move that far: no more than its margin there.
      double budget = cert->budget[size_t(i)];
      if (std::isfinite(budget)) {
        const float *x =
            fresh.context().value(p.instrs[cert->vq].operands[0]).row(i);
        double margin = ctx.certificates.rowBudget(p, *cert, x, 0.0);
        ASSERT_LE(budget, margin + 1e-4 * (1 + std::fabs(margin)))
            << where << " row " << i << ": the budget outgrew the margin";
      }
    }
    // Rows stale before the edit (by old index) and exact now were caught
    // up or recomputed.
    const std::vector<char> &before = wasStale[chain];
    for (size_t o = 0; o < before.size() && o < stale.size(); ++o)
      counts.caughtUp += before[o] && !stale[o];
    wasStale[chain++] = std::move(stale);
  }
}

Counts runEdits(const DecoderConfig &config, float codebookScale, int edits,
                uint32_t seed) {
  Program p = buildDecoder(config);
  for (const Instr &in : p.instrs)
    if (in.op == OpCode::VectorQuantize)
      for (float &x : p.weights[size_t(in.weights[0])].owned)
        x *= codebookScale;
  planCache(p, false);
  EXPECT_TRUE(verifyProgram(p).ok());
  Counts counts;
  std::mt19937 rng(seed);
  Engine e(p, EngineOptions{1, true, true});
  e.tokens = randomTokens(rng, config.maxPositions / 2, config.vocab);
  e.run(nullptr);
  std::vector<std::vector<char>> wasStale(p.certificateChains.size());
  for (int k = 0; k < edits; ++k) {
    int64_t n = int64_t(e.tokens.size());
    TokenEdit edit = randomEdit(rng, n, config.vocab);
    if (n + 1 >= config.maxPositions && edit.kind == TokenEdit::Kind::Insert)
      edit = TokenEdit::erase(0, 1);
    if (n <= 1 && edit.kind == TokenEdit::Kind::Delete) // keep a token
      edit = TokenEdit::insert(0, {0});
    EditPlan plan;
    Status st = planEdits(p, e.tokens, {edit}, plan);
    EXPECT_TRUE(st.ok()) << st.error;
    if (!st.ok())
      break;
    e.tokens = plan.tokens;
    e.remapKept(plan);
    e.run(&plan);
    std::string where = config.position + " window " +
                        std::to_string(config.window) + " edit " +
                        std::to_string(k);
    compareStates(p, e, where, wasStale, counts);
    if (::testing::Test::HasFatalFailure())
      break;
    ++counts.edits;
  }
  return counts;
}

} // namespace

TEST(Steps, DeferredRowsCatchUpExactlyOverManyEdits) {
  Counts total;
  uint32_t seed = 11;
  for (const char *position : {"none", "learned", "rope"})
    for (int64_t window : {0, 48}) {
      DecoderConfig c;
      c.position = position;
      c.window = window;
      c.dim = 16;
      c.ffn = 24;
      c.vocab = 40;
      c.maxPositions = 200;
      c.task = TaskKind::Classifier;
      c.vq = {{0, false, 1, 4}, {1, false, 2, 4}};
      c.seed = seed;
      const char *env = std::getenv("INCNN_FUZZ_EDITS"); // long local runs
      Counts n =
          runEdits(c, 2.5f, env ? std::max(1, std::atoi(env)) : 60, seed++);
      total.stale += n.stale;
      total.caughtUp += n.caughtUp;
      total.edits += n.edits;
    }
  std::printf("%lld edits: %lld stale rows seen, %lld caught up\n",
              (long long)total.edits, (long long)total.stale,
              (long long)total.caughtUp);
  EXPECT_GT(total.stale, 1000);
  EXPECT_GT(total.caughtUp, 100);
}
