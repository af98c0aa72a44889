//===- ContractTest.cpp - the exactness contract and its edges ------------===//
//
// Each test is one way past docs/exactness.md: non-finite weights, lengths
// past the accumulators' bound, values at and past it, activations that go
// non-finite. Inside the contract the result is exact; outside it both
// engines refuse, and a refused edit leaves the session as it was.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"

#include "ExactAttention.h"
#include "ProgramBuilder.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace incnn::runtime;

namespace {

/// tokens -> embed [vocab, 2] -> q, k, v linear -> attention (1 head of 2)
/// -> (optional VQ) -> pool last -> identity head. `table` is the
/// embedding, `wq`/`wk`/`wv` the 2x2 projections.
Program tinyAttention(int32_t maxPositions, std::vector<float> table,
                      std::vector<float> wq, std::vector<float> wk,
                      std::vector<float> wv, bool withVQ = false) {
  Program p;
  ProgramBuilder b(p);
  p.family = "opt";
  p.task = TaskKind::Classifier;
  p.vocabSize = int32_t(table.size() / 2);
  p.maxPositions = maxPositions;
  p.positionScheme = "none";
  p.tokenValue = b.value(1, true, "tokens");
  int32_t emb = b.weight("embed", {p.vocabSize, 2}, std::move(table));
  int32_t x = b.op(OpCode::Embed, {p.tokenValue}, {emb}, 2);
  int32_t q = b.op(OpCode::Linear, {x}, {b.weight("wq", {2, 2}, wq)}, 2);
  int32_t k = b.op(OpCode::Linear, {x}, {b.weight("wk", {2, 2}, wk)}, 2);
  int32_t v = b.op(OpCode::Linear, {x}, {b.weight("wv", {2, 2}, wv)}, 2);
  InstrAttrs a;
  a.numHeads = a.numKvHeads = 1;
  a.causal = true;
  a.scale = 1.0f;
  int32_t att = b.op(OpCode::Attention, {q, k, v}, {}, 2, true, a);
  p.values[size_t(att)].name = "attn";
  if (withVQ) {
    int32_t cb = b.weight("codebook", {1, 2, 2}, {1, 1, -1, -1});
    int32_t quant = b.value(2), codes = b.value(1);
    b.instr(OpCode::VectorQuantize, {att}, {cb}, {quant, codes});
    att = quant;
  }
  InstrAttrs last;
  last.pool = PoolKind::Last;
  int32_t pooled = b.op(OpCode::Pool, {att}, {}, 2, false, last);
  p.outputValue = b.op(OpCode::Linear, {pooled},
                       {b.weight("head", {2, 2}, {1, 0, 0, 1})}, 2, false);
  addChangeSteps(p);
  return p;
}

const std::vector<float> kIdentity = {1, 0, 0, 1}, kZero = {0, 0, 0, 0};

TEST(Contract, NonFiniteWeightsAreRefusedAtVerification) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Program p = tinyAttention(16, {1, 0, 0, 1, 1, 1, bad, 0}, kIdentity,
                              kIdentity, kIdentity);
    Status st = verifyProgram(p);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error.find("weight 'embed' element 6"), std::string::npos)
        << st.error;
    EXPECT_NE(st.error.find("must be finite"), std::string::npos) << st.error;
  }
  DecoderConfig c;
  c.vq = {{0, false, 1, 4}};
  for (const char *name : {"vq.0", "score", "layers.1"}) {
    Program p = buildDecoder(c);
    bool found = false;
    for (Weight &w : p.weights)
      if (!found && w.name.find(name) != std::string::npos) {
        w.owned.back() = std::numeric_limits<float>::quiet_NaN();
        found = true;
      }
    if (!found)
      continue;
    Status st = verifyProgram(p);
    EXPECT_FALSE(st.ok()) << name;
    EXPECT_NE(st.error.find("NaN"), std::string::npos) << st.error;
  }
}

TEST(Contract, LengthsPastTheAccumulatorBoundAreRefused) {
  Program p = tinyAttention(int32_t(exact::kMaxKeys) + 1, {1, 0, 0, 1},
                            kIdentity, kIdentity, kIdentity);
  Status st = verifyProgram(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error.find("exceeds the runtime's limit of 1048576"),
            std::string::npos)
      << st.error;
  p.maxPositions = int32_t(exact::kMaxKeys);
  EXPECT_TRUE(verifyProgram(p).ok());
}

TEST(Contract, ValueBoundFollowsTheProgramLength) {
  EXPECT_EQ(exact::valueBound(1), std::ldexp(1.0f, 25));
  EXPECT_EQ(exact::valueBound(4096), std::ldexp(1.0f, 24));
  EXPECT_EQ(exact::valueBound(65536), std::ldexp(1.0f, 20));
  EXPECT_EQ(exact::valueBound(exact::kMaxKeys), std::ldexp(1.0f, 16));
}

// q = k = 0 makes every weight 1/n, so the output is the mean of v: a
// constant v pattern must come out unchanged at every length.
TEST(Contract, LargestValuesStayExactAtTheLongestLength) {
  const float big = std::ldexp(1.0f, 24);
  const int32_t n = 4096; // valueBound(4096) = 2^24
  Program p = tinyAttention(n, {1, -1, 1, -1}, kZero, kZero, {big, 0, 0, big});
  ASSERT_TRUE(verifyProgram(p).ok());
  Evaluator oracle(p, {1});
  std::vector<int32_t> tokens(size_t(n), 0);
  ASSERT_TRUE(oracle.evaluate(tokens).ok());
  EXPECT_EQ(oracle.output(), (std::vector<float>{big, -big}));
  Session session(p, {1});
  ASSERT_TRUE(session.reset(std::vector<int32_t>(size_t(n - 8), 0)).ok());
  for (int i = 0; i < 8; ++i) // grow to the bound incrementally
    ASSERT_TRUE(session.apply(TokenEdit::insert(3, {1})).ok());
  ASSERT_TRUE(session.apply(TokenEdit::replace(n - 1, {1})).ok());
  EXPECT_EQ(session.output(), (std::vector<float>{big, -big}));
}

TEST(Contract, ValuesPastTheBoundAreRefusedNotWrapped) {
  // The same model declared for 16384 tokens: 2^24 is past 2^36 / 16384, so
  // sums of that many terms could wrap; both engines refuse at any length.
  const float big = std::ldexp(1.0f, 24);
  Program p =
      tinyAttention(16384, {1, -1, 1, -1}, kZero, kZero, {big, 0, 0, big});
  ASSERT_TRUE(verifyProgram(p).ok());
  Evaluator oracle(p, {1});
  Status st = oracle.evaluate({0, 1, 0});
  EXPECT_TRUE(st.outsideContract()) << st.error;
  EXPECT_NE(st.error.find("attention value"), std::string::npos) << st.error;
  EXPECT_NE(st.error.find("max_positions 16384"), std::string::npos)
      << st.error;
  Session session(p, {1});
  st = session.reset({0, 1, 0});
  EXPECT_TRUE(st.outsideContract()) << st.error;
}

/// Token 2's embedding is huge: its q.k score overflows float (token 3's
/// reaches 2^21, past kMaxScore but finite).
Program overflowingScores(bool withVQ) {
  return tinyAttention(64, {0.5f, 0.25f, -0.5f, 1, 1e20f, 1e20f, 1024, 1024},
                       kIdentity, kIdentity, kIdentity, withVQ);
}

void expectRefusedAndUnchanged(Session &session, const Program &program,
                               const std::vector<TokenEdit> &edit) {
  std::vector<int32_t> tokens = session.tokens();
  std::vector<float> output = session.output();
  Status st = session.apply(edit);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.outsideContract()) << st.error;
  EXPECT_NE(st.error.find("outside the exactness contract"), std::string::npos)
      << st.error;
  EXPECT_EQ(session.tokens(), tokens);
  EXPECT_TRUE(
      test::bitsEqual(session.output().data(), output.data(), output.size()));
  // The from-scratch engine refuses the same tokens.
  std::vector<int32_t> edited = tokens;
  ASSERT_TRUE(applyEditsToTokens(program, edited, edit).ok());
  Evaluator oracle(program, {1});
  EXPECT_TRUE(oracle.evaluate(edited).outsideContract());
}

TEST(Contract, OverflowingScoresAreRefusedAndTheSessionStaysExact) {
  for (bool withVQ : {false, true}) {
    Program p = overflowingScores(withVQ);
    ASSERT_TRUE(verifyProgram(p).ok());
    Session session(p, {1});
    Evaluator oracle(p, {1});
    ASSERT_TRUE(session.reset({0, 1, 0, 1, 1, 0}).ok());
    expectRefusedAndUnchanged(session, p, {TokenEdit::replace(4, {2})});
    expectRefusedAndUnchanged(session, p, {TokenEdit::insert(6, {3})});
    expectRefusedAndUnchanged(
        session, p, {TokenEdit::replace(0, {1}), TokenEdit::insert(2, {2})});
    // Later edits stay exact.
    for (const TokenEdit &e :
         {TokenEdit::replace(4, {0}), TokenEdit::insert(1, {1}),
          TokenEdit::erase(0, 2)}) {
      ASSERT_TRUE(session.apply(e).ok());
      ASSERT_TRUE(oracle.evaluate(session.tokens()).ok());
      EXPECT_TRUE(test::bitsEqual(session.output().data(),
                                  oracle.output().data(),
                                  oracle.output().size()));
    }
    // A refused reset keeps the old document too.
    std::vector<int32_t> tokens = session.tokens();
    std::vector<float> output = session.output();
    EXPECT_TRUE(session.reset({2, 2}).outsideContract());
    EXPECT_EQ(session.tokens(), tokens);
    EXPECT_EQ(session.output(), output);
  }
}

TEST(Contract, NonFiniteActivationsFromFiniteWeightsAreRefused) {
  // Token 2 overflows in the v projection (3e38 * 2): the value is infinite.
  Program p = tinyAttention(64, {1, 0, 0, 1, 3e38f, 3e38f, 0, 0}, kZero, kZero,
                            {1, 1, 1, 1}, true);
  ASSERT_TRUE(verifyProgram(p).ok());
  Session session(p, {1});
  ASSERT_TRUE(session.reset({0, 1, 3, 1}).ok());
  expectRefusedAndUnchanged(session, p, {TokenEdit::replace(1, {2})});
}

} // namespace
