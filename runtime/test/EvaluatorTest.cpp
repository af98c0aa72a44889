//===- EvaluatorTest.cpp - End-to-end program evaluation ------------------===//

#include "ProgramBuilder.h"
#include "TestUtil.h"
#include "incnn/runtime/Runtime.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::test;

namespace {

std::vector<int32_t> someTokens(int64_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t &x : t)
    x = int32_t(rng() % uint32_t(vocab));
  return t;
}

std::vector<DecoderConfig> configs() {
  std::vector<DecoderConfig> cs;
  DecoderConfig opt;
  cs.push_back(opt); // OPT-like causal LM, learned positions, ReLU
  DecoderConfig cls = opt;
  cls.task = TaskKind::Classifier;
  cls.pool = PoolKind::Mean;
  cls.activation = OpCode::Gelu;
  cls.seed = 2;
  cs.push_back(cls);
  DecoderConfig llama;
  llama.family = "llama";
  llama.position = "rope";
  llama.heads = 4;
  llama.kvHeads = 2;
  llama.seed = 3;
  cs.push_back(llama);
  DecoderConfig nope = llama;
  nope.position = "none";
  nope.task = TaskKind::Classifier;
  nope.seed = 4;
  cs.push_back(nope);
  DecoderConfig bidir = opt;
  bidir.causal = false;
  bidir.task = TaskKind::Classifier;
  bidir.seed = 5;
  cs.push_back(bidir);
  DecoderConfig vq = opt;
  vq.vq = {{0, false, 2, 16}, {1, true, 4, 8}};
  vq.seed = 6;
  cs.push_back(vq);
  // Sliding windows: causal with a global layer 0, and bidirectional.
  DecoderConfig local = nope;
  local.window = 5;
  local.globalEvery = 2;
  local.seed = 7;
  cs.push_back(local);
  DecoderConfig localBidir = bidir;
  localBidir.window = 4;
  localBidir.seed = 8;
  cs.push_back(localBidir);
  // Gated activations: fc1 gives [u | g].
  for (OpCode gated : {OpCode::GeGlu, OpCode::SwiGlu}) {
    DecoderConfig g = opt;
    g.activation = gated;
    g.seed = 9 + uint32_t(gated);
    cs.push_back(g);
  }
  return cs;
}

TEST(Evaluator, MatchesReferenceInterpreter) {
  for (const DecoderConfig &c : configs()) {
    Program p = buildDecoder(c);
    ASSERT_TRUE(verifyProgram(p).ok()) << verifyProgram(p).error;
    Evaluator ev(p, EvaluatorOptions{2});
    for (int64_t n : {1, 7, 40}) {
      auto toks = someTokens(n, c.vocab, uint32_t(n));
      Status st = ev.evaluate(toks);
      ASSERT_TRUE(st.ok()) << st.error;
      Vec want = referenceEvaluate(p, toks);
      EXPECT_LT(maxRelError(ev.output(), want), 1e-4)
          << c.family << " " << c.position << " n=" << n;
      EXPECT_EQ(ev.macs(), countMacs(p, n));
    }
  }
}

TEST(Evaluator, ThreadCountDoesNotChangeBits) {
  for (const DecoderConfig &c : configs()) {
    Program p = buildDecoder(c);
    Evaluator one(p, EvaluatorOptions{1}), two(p, EvaluatorOptions{2});
    auto toks = someTokens(50, c.vocab, 9);
    ASSERT_TRUE(one.evaluate(toks).ok());
    ASSERT_TRUE(two.evaluate(toks).ok());
    for (size_t v = 0; v < p.values.size(); ++v)
      ASSERT_EQ(one.value(int32_t(v)), two.value(int32_t(v))) << "value " << v;
  }
}

TEST(Evaluator, CausalPrefixRowsAreBitIdentical) {
  // For causal models, every per-token value of a prefix's rows is the same
  // whether the prefix is evaluated alone or inside a longer sequence.
  for (const DecoderConfig &c : configs()) {
    if (!c.causal)
      continue;
    Program p = buildDecoder(c);
    Evaluator full(p, EvaluatorOptions{2}), pre(p, EvaluatorOptions{1});
    auto toks = someTokens(45, c.vocab, 11);
    ASSERT_TRUE(full.evaluate(toks).ok());
    for (int64_t m : {1, 6, 23}) {
      std::vector<int32_t> prefix(toks.begin(), toks.begin() + m);
      ASSERT_TRUE(pre.evaluate(prefix).ok());
      for (size_t v = 0; v < p.values.size(); ++v) {
        if (!p.values[v].perToken)
          continue;
        size_t w = size_t(p.values[v].width);
        ASSERT_TRUE(bitsEqual(pre.value(int32_t(v)).data(),
                              full.value(int32_t(v)).data(), size_t(m) * w))
            << c.family << " value " << v << " prefix " << m;
      }
    }
  }
}

TEST(Evaluator, RejectsBadTokens) {
  Program p = buildDecoder(DecoderConfig{});
  Evaluator ev(p);
  ASSERT_TRUE(ev.evaluate({1, 2, 3}).ok());
  std::vector<float> before = ev.output();
  Status st = ev.evaluate({});
  EXPECT_NE(st.error.find("empty"), std::string::npos) << st.error;
  st = ev.evaluate({1, -1});
  EXPECT_NE(st.error.find("outside the vocabulary"), std::string::npos);
  st = ev.evaluate({1, p.vocabSize});
  EXPECT_NE(st.error.find("outside the vocabulary"), std::string::npos);
  st = ev.evaluate(std::vector<int32_t>(size_t(p.maxPositions) + 1, 0));
  EXPECT_NE(st.error.find("context window"), std::string::npos);
  EXPECT_EQ(ev.output(), before);
  EXPECT_EQ(ev.tokens(), (std::vector<int32_t>{1, 2, 3}));
}

TEST(Evaluator, MacCount) {
  DecoderConfig c;
  c.layers = 1;
  c.dim = 8;
  c.heads = 2;
  c.kvHeads = 2;
  c.ffn = 16;
  c.vocab = 10;
  Program p = buildDecoder(c);
  const uint64_t n = 5;
  uint64_t linear = n * 8 * 8 * 4 + n * 8 * 16 * 2 + 8 * 10;
  uint64_t attention = 2 * (n * (n + 1) / 2) * 8;
  EXPECT_EQ(countMacs(p, int64_t(n)), linear + attention);
}

} // namespace
