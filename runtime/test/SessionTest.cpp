//===- SessionTest.cpp - incremental vs from-scratch, bit for bit ---------===//
//
// A differential fuzzer: random small programs (both families, every
// position scheme, both masks, VQ sites, full and minimal cache plans) and
// random edit scripts; after every edit the session's output must equal a
// from-scratch evaluation of the same tokens in every bit.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Runtime.h"

#include "ProgramBuilder.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>

using namespace incnn::runtime;

namespace {

std::vector<int32_t> randomTokens(std::mt19937 &rng, int64_t n, int32_t vocab) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t &x : t)
    x = tok(rng);
  return t;
}

TokenEdit randomEdit(std::mt19937 &rng, int64_t n, int64_t maxLen,
                     int32_t vocab) {
  std::uniform_int_distribution<int> kind(0, 2), len(1, 3);
  int k = kind(rng);
  if (n >= maxLen - 3)
    k = 2; // make room
  if (n <= 4 && k == 2)
    k = 1;
  int l = len(rng);
  if (k == 0) {
    l = int(std::min<int64_t>(l, n));
    std::uniform_int_distribution<int64_t> at(0, n - l);
    return TokenEdit::replace(at(rng), randomTokens(rng, l, vocab));
  }
  if (k == 1) {
    std::uniform_int_distribution<int64_t> at(0, n);
    return TokenEdit::insert(at(rng), randomTokens(rng, l, vocab));
  }
  l = int(std::min<int64_t>(l, n - 1));
  std::uniform_int_distribution<int64_t> at(0, n - l);
  return TokenEdit::erase(at(rng), l);
}

struct FuzzCase {
  DecoderConfig config;
  bool minimalPlan;
  float codebookScale = 1.0f; ///< > 1 spreads codewords: wide VQ margins
  /// Hostile weights: q/k projections and v projections scaled so that some
  /// inputs leave the exactness contract (scores past 2^20 or overflowing,
  /// values past their bound). 1 = ordinary weights.
  float qkScale = 1.0f, vScale = 1.0f;
  int64_t minLength = 1;    ///< of the first document
  bool certificates = true; ///< VQ margin certificates in the session
  /// Certified rows are deferred (else updated, and certified by the norm
  /// budget or, past it, by their codes' directions).
  bool defer = true;
};

int64_t totalCertified = 0, totalDeferred = 0, totalRefused = 0;

/// Scales the linear layers that produce attention operand `operand`.
void scaleAttentionInputs(Program &program, size_t operand, float scale) {
  if (scale == 1.0f)
    return;
  for (const Instr &att : program.instrs) {
    if (att.op != OpCode::Attention)
      continue;
    for (const Instr &in : program.instrs)
      if (in.op == OpCode::Linear && in.results[0] == att.operands[operand])
        for (size_t w = 0; w < in.weights.size(); ++w)
          for (float &x : program.weights[size_t(in.weights[w])].owned)
            x *= scale;
  }
}

/// Every output bit, or both refused.
bool sameOutcome(const Status &session, const Status &oracle) {
  return session.ok() == oracle.ok() &&
         session.outsideContract() == oracle.outsideContract();
}

/// Runs `edits` random edit batches and checks every output bit.
int64_t fuzzOne(const FuzzCase &c, int edits, uint32_t seed) {
  Program program = buildDecoder(c.config);
  for (const Instr &in : program.instrs)
    if (in.op == OpCode::VectorQuantize)
      for (float &x : program.weights[size_t(in.weights[0])].owned)
        x *= c.codebookScale;
  for (CertificateChain &chain : program.certificateChains)
    chain.defer = c.defer;
  planCache(program, c.minimalPlan);
  scaleAttentionInputs(program, 0, c.qkScale);
  scaleAttentionInputs(program, 1, c.qkScale);
  scaleAttentionInputs(program, 2, c.vScale);
  EXPECT_TRUE(verifyProgram(program).ok());
  std::mt19937 rng(seed);
  Session session(program, {1, c.certificates});
  Evaluator oracle(program, {1});
  std::uniform_int_distribution<int64_t> len(
      c.minLength, std::max(c.minLength, int64_t(c.config.maxPositions / 2)));
  // Hostile programs refuse some documents; find one they accept.
  for (int tries = 0;; ++tries) {
    std::vector<int32_t> tokens = randomTokens(rng, len(rng), c.config.vocab);
    Status st = session.reset(tokens), want = oracle.evaluate(tokens);
    EXPECT_TRUE(sameOutcome(st, want)) << st.error << " vs " << want.error;
    if (st.ok())
      break;
    EXPECT_TRUE(st.outsideContract()) << st.error;
    ++totalRefused;
    if (tries == 200)
      return 0;
  }
  EXPECT_EQ(session.output(), oracle.output());
  int64_t checked = 0;
  std::uniform_int_distribution<int> batch(1, 3);
  for (int e = 0; e < edits; ++e) {
    std::vector<TokenEdit> script;
    std::vector<int32_t> expected = session.tokens();
    int b = batch(rng);
    for (int i = 0; i < b; ++i) {
      script.push_back(randomEdit(rng, int64_t(expected.size()),
                                  c.config.maxPositions, c.config.vocab));
      Status st = applyEditsToTokens(program, expected, {script.back()});
      if (!st.ok())
        script.pop_back();
    }
    if (script.empty())
      continue;
    std::vector<int32_t> oldTokens = session.tokens();
    std::vector<float> oldOutput = session.output();
    Status st = session.apply(script);
    Status want = oracle.evaluate(expected);
    EXPECT_TRUE(sameOutcome(st, want))
        << "session: " << st.error << " oracle: " << want.error;
    if (!st.ok()) {
      // Refused: the session is exactly as it was, and keeps working.
      EXPECT_TRUE(st.outsideContract()) << st.error;
      EXPECT_EQ(session.tokens(), oldTokens);
      EXPECT_TRUE(test::bitsEqual(session.output().data(), oldOutput.data(),
                                  oldOutput.size()));
      ++totalRefused;
      continue;
    }
    EXPECT_EQ(session.tokens(), expected);
    const std::vector<float> &got = session.output(),
                             &wantOut = oracle.output();
    bool same = got.size() == wantOut.size() &&
                test::bitsEqual(got.data(), wantOut.data(), got.size());
    EXPECT_TRUE(same) << "family " << c.config.family << " activation "
                      << opCodeName(c.config.activation) << " position "
                      << c.config.position << " causal " << c.config.causal
                      << " window " << c.config.window << " vq "
                      << c.config.vq.size() << " minimal plan " << c.minimalPlan
                      << " seed " << seed << " edit " << e << " pool "
                      << int(c.config.pool) << " task " << int(c.config.task)
                      << " batch " << script.size() << " kinds "
                      << int(script[0].kind);
    if (!same)
      return checked;
    EXPECT_LE(session.stats().macs, session.stats().macsFull * 3);
    totalCertified += session.stats().certifiedRows;
    totalDeferred += session.stats().deferredRows;
    ++checked;
  }
  return checked;
}

std::vector<FuzzCase> allCases() {
  std::vector<FuzzCase> cases;
  uint32_t seed = 1;
  for (std::string family : {"opt", "llama"})
    for (std::string position : {"learned", "rope", "none"}) {
      if (family == "llama" && position == "learned")
        continue;
      for (bool causal : {true, false})
        for (int vq = 0; vq < 3; ++vq)
          for (bool minimal : {false, true}) {
            FuzzCase c;
            c.config.family = family;
            c.config.position = position;
            c.config.causal = causal;
            c.config.layers = 2;
            c.config.dim = 16;
            c.config.heads = 4;
            c.config.kvHeads = family == "llama" ? 2 : 4;
            c.config.ffn = 24;
            c.config.vocab = 40;
            c.config.maxPositions = 48;
            c.config.seed = seed++;
            c.config.task = vq == 2 ? TaskKind::Classifier : TaskKind::CausalLM;
            c.config.pool = seed % 2 ? PoolKind::Mean : PoolKind::Last;
            // Every activation family of the op table, gated ones included.
            const OpCode activations[] = {OpCode::Relu, OpCode::Gelu,
                                          OpCode::GeGlu, OpCode::SwiGlu,
                                          OpCode::GeluTanh};
            c.config.activation = activations[seed % 5];
            if (vq == 1)
              c.config.vq = {{0, false, 2, 8}, {1, false, 4, 16}};
            if (vq == 2)
              c.config.vq = {{0, true, 1, 16}, {1, false, 2, 4}};
            c.minimalPlan = minimal;
            c.certificates = seed % 3 != 0; // also without certificates
            c.defer = seed % 4 < 2;
            cases.push_back(c);
            if (!minimal)
              continue;
            // Sliding windows of 1 to 6 keys; some alternate with global
            // layers.
            c.config.window = 1 + seed % 6;
            c.config.globalEvery = seed % 3 == 0 ? 2 : 0;
            c.config.seed = seed++;
            cases.push_back(c);
          }
    }
  return cases;
}

/// Edits per fuzz case: `base`, or INCNN_FUZZ_EDITS for long local runs.
int fuzzEdits(int base) {
  if (const char *env = std::getenv("INCNN_FUZZ_EDITS"))
    return std::max(1, std::atoi(env));
  return base;
}

/// A small classifier with VQ after both attentions (the certificate
/// chains), codebooks spread by `codebookScale`.
FuzzCase certifiedCase(const std::string &position, float codebookScale,
                       int32_t maxPositions, uint32_t seed) {
  FuzzCase c;
  c.config.family = "opt";
  c.config.position = position;
  c.config.dim = 16;
  c.config.ffn = 24;
  c.config.vocab = 40;
  c.config.maxPositions = maxPositions;
  c.config.seed = seed;
  c.config.task = TaskKind::Classifier;
  c.config.vq = {{0, false, 1, 4}, {1, false, 2, 4}};
  c.minimalPlan = true;
  c.codebookScale = codebookScale;
  return c;
}

/// `tables` with the values read from computed tables stored instead;
/// counts those keyed by the token alone and by VQ codes too.
Program storingComputedTables(const Program &tables, int &byToken,
                              int &byCode) {
  Program stored = tables;
  byToken = byCode = 0;
  for (size_t v = 0; v < tables.values.size(); ++v) {
    std::optional<TableRows> t = tableRowsOf(tables, int32_t(v));
    if (!tables.values[v].tableRows || !t || t->weight >= 0)
      continue;
    (t->key.vqs.empty() ? byToken : byCode) += 1;
    stored.values[v].tableRows = false;
  }
  return stored;
}

/// One random edit applied to both sessions, whose outputs must both be
/// the from-scratch run's.
::testing::AssertionResult editBothExactly(std::mt19937 &rng,
                                           const DecoderConfig &config,
                                           Session &a, Session &b,
                                           Evaluator &oracle) {
  TokenEdit edit = randomEdit(rng, int64_t(a.tokens().size()),
                              config.maxPositions, config.vocab);
  for (Session *s : {&a, &b})
    if (Status st = s->apply({edit}); !st.ok())
      return ::testing::AssertionFailure() << "refused: " << st.error;
  if (Status st = oracle.evaluate(a.tokens()); !st.ok())
    return ::testing::AssertionFailure() << "from scratch: " << st.error;
  if (a.output() != oracle.output())
    return ::testing::AssertionFailure() << "not the from-scratch output";
  if (a.output() != b.output())
    return ::testing::AssertionFailure() << "the sessions differ";
  return ::testing::AssertionSuccess();
}

/// A two-layer classifier (the builder's d 32) without positions, with a
/// one-group VQ of four codes after each attention.
DecoderConfig vqClassifierConfig() {
  DecoderConfig config;
  config.position = "none";
  config.maxPositions = 256;
  config.task = TaskKind::Classifier;
  config.vq = {{0, false, 1, 4}, {1, false, 1, 4}};
  return config;
}

/// vqClassifierConfig's program, its cache planned.
Program vqClassifier() {
  Program program = buildDecoder(vqClassifierConfig());
  planCache(program, true);
  return program;
}

} // namespace

TEST(Session, MatchesFromScratchBitForBit) {
  int edits = fuzzEdits(40);
  int64_t checked = 0;
  std::vector<FuzzCase> cases = allCases();
  for (size_t i = 0; i < cases.size(); ++i)
    checked += fuzzOne(cases[i], edits, uint32_t(1000 + i));
  std::printf("checked %lld edits over %zu random programs (%lld rows "
              "certified by VQ margins)\n",
              (long long)checked, cases.size(), (long long)totalCertified);
  EXPECT_GT(checked, int64_t(cases.size()) * edits / 2);
}

TEST(Session, MarginCertificatesKeepOutputsExact) {
  // Spread-out codebooks give wide margins, so many rows whose attention
  // moved are certified instead of recomputed; outputs must stay exact.
  int64_t before = totalCertified, checked = 0;
  uint32_t seed = 500;
  // Scales where codes both stay (certificates apply) and flip (an unsound
  // certificate would show as a wrong output).
  for (float scale : {1.5f, 2.5f})
    for (std::string position : {"none", "learned", "rope"})
      for (bool causal : {true, false})
        for (bool defer : {true, false}) {
          FuzzCase c = certifiedCase(position, scale, 48, seed);
          c.config.causal = causal;
          c.defer = defer;
          checked += fuzzOne(c, 60, seed++);
        }
  std::printf("checked %lld edits, %lld rows certified\n", (long long)checked,
              (long long)(totalCertified - before));
  EXPECT_GT(totalCertified - before, 100);
}

TEST(Session, DeferredUpdatesKeepOutputsExact) {
  // Longer documents and wide margins: most rows after an edit are deferred
  // (their accumulators go stale), and later edits catch them up or
  // recompute them; outputs must stay exact throughout.
  int64_t before = totalDeferred, checked = 0;
  uint32_t seed = 700;
  for (std::string position : {"none", "learned", "rope"})
    for (int64_t window : {0, 40}) {
      FuzzCase c = certifiedCase(position, 2.5f, 240, seed);
      c.config.window = window;
      c.minLength = 120;
      checked += fuzzOne(c, fuzzEdits(80), seed++);
    }
  std::printf("checked %lld edits, %lld rows deferred\n", (long long)checked,
              (long long)(totalDeferred - before));
  EXPECT_GT(totalDeferred - before, 1000);
}

TEST(Session, HostileWeightsAreRefusedExactlyWhenFromScratchRefuses) {
  // Scores near and past 2^20, overflowing to infinity, and values near
  // their bound: every input is either exact or refused by both engines, and
  // a refused edit leaves the session unchanged (sameOutcome and the checks
  // in fuzzOne).
  int edits = fuzzEdits(40);
  int64_t before = totalRefused, checked = 0;
  uint32_t seed = 900;
  struct Scales {
    float qk, v;
  };
  for (Scales sc : {Scales{900, 1}, Scales{1100, 1}, Scales{1e19f, 1},
                    Scales{1, 7e7f}, Scales{300, 1e8f}})
    for (std::string family : {"opt", "llama"})
      for (std::string position : {"none", "rope"})
        for (bool vq : {false, true}) {
          FuzzCase c;
          c.config.family = family;
          c.config.position = position;
          c.config.layers = 2;
          c.config.dim = 16;
          c.config.heads = 4;
          c.config.kvHeads = family == "llama" ? 2 : 4;
          c.config.ffn = 24;
          c.config.vocab = 40;
          c.config.maxPositions = 48;
          c.config.seed = seed;
          c.config.task = TaskKind::Classifier;
          if (vq)
            c.config.vq = {{0, false, 1, 8}, {1, false, 2, 4}};
          c.minimalPlan = seed % 2;
          c.qkScale = sc.qk;
          c.vScale = sc.v;
          int64_t r0 = totalRefused, n = fuzzOne(c, edits, seed++);
          checked += n;
          if (std::getenv("INCNN_FUZZ_VERBOSE"))
            std::printf("qk %g v %g %s %s vq %d: %lld exact, %lld refused\n",
                        double(sc.qk), double(sc.v), family.c_str(),
                        position.c_str(), int(vq), (long long)n,
                        (long long)(totalRefused - r0));
        }
  std::printf("checked %lld edits exact, %lld refused by both engines\n",
              (long long)checked, (long long)(totalRefused - before));
  EXPECT_GT(totalRefused - before, 20);
  EXPECT_GT(checked, 200);
}

TEST(Session, RejectedEditsLeaveTheSessionUnchanged) {
  DecoderConfig config;
  config.vq = {{0, false, 2, 8}};
  Program program = buildDecoder(config);
  Session session(program, {1});
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  ASSERT_TRUE(session.reset(tokens).ok());
  std::vector<float> before = session.output();
  std::vector<std::vector<TokenEdit>> bad = {
      {TokenEdit::replace(5, {1})},
      {TokenEdit::insert(-1, {1})},
      {TokenEdit::insert(6, {1})},
      {TokenEdit::erase(3, 3)},
      {TokenEdit::erase(0, 5)},
      {TokenEdit::replace(0, {config.vocab})},
      {TokenEdit::insert(0, {-1})},
      {TokenEdit::insert(0, {})},
      // A valid edit followed by a bad one: the whole batch is rejected.
      {TokenEdit::replace(0, {7}), TokenEdit::erase(10, 1)},
      {TokenEdit::insert(0,
                         std::vector<int32_t>(size_t(config.maxPositions), 1))},
  };
  for (const auto &batch : bad) {
    Status st = session.apply(batch);
    EXPECT_FALSE(st.ok());
    EXPECT_FALSE(st.error.empty());
    EXPECT_EQ(session.tokens(), tokens);
    EXPECT_EQ(session.output(), before);
  }
  // And the session still works.
  ASSERT_TRUE(session.apply(TokenEdit::replace(2, {9})).ok());
  Evaluator oracle(program, {1});
  ASSERT_TRUE(oracle.evaluate(session.tokens()).ok());
  EXPECT_EQ(session.output(), oracle.output());
}

TEST(Session, InterruptionsInsideAStepLeaveTheSessionAsItWas) {
  // The check runs before every step and between eighths of a from-scratch
  // attention; stopping at any of those calls leaves the session as it was
  // (old tokens, old output), and it goes on exactly afterwards.
  DecoderConfig config;
  config.position = "none";
  config.maxPositions = 1024;
  config.task = TaskKind::Classifier;
  config.vq = {{0, false, 1, 4}};
  Program program = buildDecoder(config);
  Session session(program, {2});
  std::mt19937 rng(11);
  std::vector<int32_t> first = randomTokens(rng, 600, config.vocab),
                       second = randomTokens(rng, 700, config.vocab);
  ASSERT_TRUE(session.reset(first).ok());
  std::vector<float> before = session.output();
  int64_t calls = 0;
  session.setInterruptCheck([&] { return ++calls < 0; });
  ASSERT_TRUE(session.reset(second).ok());
  int64_t perReset = calls;
  EXPECT_GT(perReset, int64_t(program.steps.size()))
      << "no check inside the attention steps";
  ASSERT_TRUE(session.reset(first).ok());
  for (int64_t stopAt :
       {int64_t(1), perReset / 3, perReset / 2, perReset - 1}) {
    calls = 0;
    session.setInterruptCheck([&] { return ++calls >= stopAt; });
    Status st = session.reset(second);
    EXPECT_TRUE(st.interrupted()) << "stop at " << stopAt << ": " << st.error;
    EXPECT_EQ(session.tokens(), first);
    EXPECT_EQ(session.output(), before);
  }
  session.setInterruptCheck(nullptr);
  ASSERT_TRUE(session.apply(TokenEdit::replace(300, {5})).ok());
  Evaluator oracle(program, {1});
  ASSERT_TRUE(oracle.evaluate(session.tokens()).ok());
  EXPECT_EQ(session.output(), oracle.output());
}

TEST(Session, ComputedTablesReadRowsByTheirKeys) {
  // Without learned positions the first layer's queries, keys and values
  // depend on their own token alone, and after a one-group VQ the next
  // layer's on the token and that VQ's code: the minimal plan reads them
  // from tables the runtime computes once. Over replaces, inserts and deletes
  // (whose old keys come from the old tokens' and old codes' table rows) the
  // session stays exact and equal, bit for bit, to one that stores those
  // rows, with the updates deferred or not. No VQ follows the layer the
  // tables feed, so its every updated row reaches the output.
  for (std::string position : {"none", "rope", "learned"})
    for (int vqLayer : {1, 0})
      for (bool defer : {false, true}) {
        DecoderConfig config;
        config.position = position;
        config.maxPositions = 4096;
        config.task = TaskKind::Classifier;
        config.vq = {{vqLayer, false, 1, 4}};
        Program tables = buildDecoder(config);
        planCache(tables, true);
        for (CertificateChain &chain : tables.certificateChains)
          chain.defer = defer;
        ASSERT_TRUE(verifyProgram(tables).ok()) << verifyProgram(tables).error;
        int byToken = 0, byCode = 0;
        Program stored = storingComputedTables(tables, byToken, byCode);
        bool noPositions = position != "learned";
        EXPECT_EQ(byToken, noPositions ? 3 : 0) << position;
        if (vqLayer == 0 && noPositions) // the second layer's q, k, v, ...
          EXPECT_GE(byCode, 3) << position;
        else
          EXPECT_EQ(byCode, 0) << position << vqLayer;
        Session withTables(tables, {1}), withRows(stored, {1});
        std::mt19937 rng(11);
        std::vector<int32_t> tokens = randomTokens(rng, 1000, config.vocab);
        ASSERT_TRUE(withTables.reset(tokens).ok());
        ASSERT_TRUE(withRows.reset(tokens).ok());
        EXPECT_EQ(withRows.cacheBytes() - withTables.cacheBytes(),
                  int64_t(byToken + byCode) * 4 * config.dim * 1000);
        Evaluator oracle(tables, {1});
        int64_t updated = 0, flips = 0;
        for (int e = 0; e < 30; ++e) {
          ASSERT_TRUE(
              editBothExactly(rng, config, withTables, withRows, oracle))
              << position << " " << vqLayer << " edit " << e;
          const EditStats &s = withTables.stats();
          updated += s.updatedRows[size_t(vqLayer == 0 ? 1 : 0)];
          flips += s.codeFlips[0];
        }
        if (!defer)
          EXPECT_GT(updated, 3000) << position;
        EXPECT_GT(flips, 10) << position; // changed codes: changed keys
      }
}

TEST(Session, FullRowsOverRepeatedKeysAreExact) {
  // Read from computed tables over a small vocabulary, keys repeat: a row
  // recomputed in full goes over its distinct keys with their counts, and
  // stays exact and equal to the session storing the rows (which goes over
  // every key): without a VQ (so that every row's error reaches the
  // output), with one after either layer, deferral on or off, causal and
  // bidirectional (and windowed, which goes over every key). A count left at
  // 1, or a key left out of a row's list, fails it.
  for (auto [causal, window] : {std::pair{true, 0}, {true, 48}, {false, 0}})
    for (int vqLayer : {-1, 1, 0})
      for (bool defer : {false, true}) {
        if (vqLayer < 0 && defer)
          continue; // nothing to defer
        DecoderConfig config;
        config.position = "none";
        config.causal = causal;
        config.window = window;
        config.vocab = 12;
        config.maxPositions = 1024;
        config.task = TaskKind::Classifier;
        config.pool = PoolKind::Mean; // every row reaches the output
        if (vqLayer >= 0)
          config.vq = {{vqLayer, false, 1, 4}};
        Program tables = buildDecoder(config);
        planCache(tables, true);
        for (CertificateChain &chain : tables.certificateChains)
          chain.defer = defer;
        int byToken = 0, byCode = 0;
        Program stored = storingComputedTables(tables, byToken, byCode);
        ASSERT_EQ(byToken, 3);
        Session withTables(tables, {1}), withRows(stored, {1});
        std::mt19937 rng(17);
        std::vector<int32_t> tokens = randomTokens(rng, 600, config.vocab);
        ASSERT_TRUE(withTables.reset(tokens).ok());
        ASSERT_TRUE(withRows.reset(tokens).ok());
        Evaluator oracle(tables, {1});
        for (int e = 0, edits = std::max(25, fuzzEdits(25) / 20); e < edits;
             ++e)
          ASSERT_TRUE(
              editBothExactly(rng, config, withTables, withRows, oracle))
              << causal << " " << window << " " << vqLayer << " " << defer
              << " edit " << e;
        // A long insertion at the end: more full rows than one batch of
        // counts (256), each batch continuing the last's. Its rows' own keys
        // are distinct, so the document is long enough for them to stay
        // under a third of the keys.
        tokens = randomTokens(rng, 700, config.vocab);
        for (Session *s : {&withTables, &withRows})
          ASSERT_TRUE(s->reset(tokens).ok());
        TokenEdit paste =
            TokenEdit::insert(700, randomTokens(rng, 270, config.vocab));
        for (Session *s : {&withTables, &withRows})
          ASSERT_TRUE(s->apply({paste}).ok());
        ASSERT_TRUE(oracle.evaluate(withTables.tokens()).ok());
        EXPECT_EQ(withTables.output(), oracle.output())
            << causal << " " << window << " " << vqLayer << " " << defer;
        EXPECT_EQ(withRows.output(), oracle.output());
        // The same insertion on two threads: the full rows' tasks then run
        // on both, and read the buffers of the thread running the update.
        Session threaded(tables, {2});
        ASSERT_TRUE(threaded.reset(tokens).ok());
        ASSERT_TRUE(threaded.apply({paste}).ok());
        EXPECT_EQ(threaded.output(), oracle.output());
      }
}

TEST(Session, ComputedTablesPastTheirWorkCapAreStoredRows) {
  // Every (token, code) row of the second layer's tables runs the first
  // layer's MLP: with 2,048 tokens, 8 codes and a 8,192-wide MLP filling
  // them would take more multiply-adds than the runtime's cap, so it
  // computes none and the session stores those rows, exactly; a 1,024-wide
  // MLP stays under the cap and its tables are read.
  for (int32_t ffn : {1024, 8192}) {
    DecoderConfig config;
    config.position = "none";
    config.vocab = 2048;
    config.ffn = ffn;
    config.maxPositions = 1024;
    config.task = TaskKind::Classifier;
    config.vq = {{0, false, 1, 8}};
    Program tables = buildDecoder(config);
    planCache(tables, true);
    ASSERT_TRUE(verifyProgram(tables).ok()) << verifyProgram(tables).error;
    int byToken = 0, byCode = 0;
    Program stored = storingComputedTables(tables, byToken, byCode);
    ASSERT_EQ(byToken, 3) << ffn; // the first layer's q, k, v
    ASSERT_GE(byCode, 3) << ffn;  // the second's
    Session withTables(tables, {1}), withRows(stored, {1});
    std::mt19937 rng(5);
    std::vector<int32_t> tokens = randomTokens(rng, 300, config.vocab);
    ASSERT_TRUE(withTables.reset(tokens).ok());
    ASSERT_TRUE(withRows.reset(tokens).ok());
    if (ffn == 1024)
      EXPECT_LT(withTables.cacheBytes(), withRows.cacheBytes());
    else
      EXPECT_EQ(withTables.cacheBytes(), withRows.cacheBytes());
    Evaluator oracle(tables, {1});
    for (int e = 0; e < 12; ++e)
      ASSERT_TRUE(editBothExactly(rng, config, withTables, withRows, oracle))
          << ffn << " edit " << e;
  }
}

TEST(ProgramSteps, ComputedTablesHaveABoundedSize) {
  // A computed table larger than kMaxComputedTableBytes is not a table (a
  // program marking one is refused), so a file cannot make the runtime
  // allocate it.
  DecoderConfig config;
  config.position = "none";
  Program p = buildDecoder(config);
  planCache(p, true);
  int32_t query =
      std::find_if(p.instrs.begin(), p.instrs.end(), [](const Instr &in) {
        return in.op == OpCode::Attention;
      })->operands[0];
  ASSERT_TRUE(tableRowsOf(p, query));
  p.vocabSize = int32_t(kMaxComputedTableBytes / (4 * config.dim) + 1);
  EXPECT_FALSE(tableRowsOf(p, query));
  p.vocabSize = int32_t(kMaxComputedTableBytes / (4 * config.dim));
  EXPECT_TRUE(tableRowsOf(p, query));
}

TEST(Session, ReplacementCostsLessThanFromScratchWithVQ) {
  DecoderConfig config = vqClassifierConfig();
  Program program = vqClassifier();
  Session session(program, {1});
  std::mt19937 rng(7);
  ASSERT_TRUE(session.reset(randomTokens(rng, 200, config.vocab)).ok());
  ASSERT_TRUE(session.apply(TokenEdit::replace(100, {3})).ok());
  const EditStats &s = session.stats();
  EXPECT_LT(s.macs * 2, s.macsFull)
      << "macs " << s.macs << " full " << s.macsFull;
  ASSERT_EQ(s.dirtyRows.size(), 2u);
  EXPECT_GE(s.dirtyRows[0], 1);
}

TEST(Session, StateBytesCountTheRewrittenAccumulators) {
  DecoderConfig config = vqClassifierConfig();
  Program program = vqClassifier();
  Session session(program, {1});
  std::mt19937 rng(11);
  int64_t n = 120;
  ASSERT_TRUE(session.reset(randomTokens(rng, n, config.vocab)).ok());
  // A row's accumulators: per head, a shift, a count, a denominator and
  // headDim numerators.
  uint64_t perRow =
      uint64_t(config.heads) * (16 + 8 * uint64_t(config.dim / config.heads));
  EXPECT_EQ(session.stats().stateBytes, uint64_t(config.layers * n) * perRow);
  for (int64_t at : {100, 30, 0}) {
    ASSERT_TRUE(session.apply(TokenEdit::replace(at, {5})).ok());
    const EditStats &s = session.stats();
    uint64_t touched = 0; // rows delta-updated or recomputed, every layer
    for (size_t l = 0; l < s.updatedRows.size(); ++l)
      touched += uint64_t(s.updatedRows[l] + s.dirtyRows[l]);
    EXPECT_GE(s.stateBytes, touched * perRow) << "edit at " << at;
    EXPECT_LE(s.stateBytes, uint64_t(2 * config.layers * n) * perRow);
    EXPECT_GT(s.stateBytes, 0u);
  }
}

TEST(Session, LongDocumentsStayExact) {
  // Thousands of keys per row: the accumulators' bound (valueBound of the
  // program length) is what makes these sums exact. INCNN_LONG_TOKENS and
  // INCNN_LONG_EDITS raise the length and the edit count for long runs.
  int64_t length = 3000;
  int edits = 6;
  if (const char *env = std::getenv("INCNN_LONG_TOKENS"))
    length = std::max<int64_t>(16, std::atoll(env));
  if (const char *env = std::getenv("INCNN_LONG_EDITS"))
    edits = std::max(1, std::atoi(env));
  int64_t checked = 0;
  uint32_t seed = 2000;
  for (std::string family : {"opt", "llama"})
    for (std::string position : {"none", "rope"}) {
      FuzzCase c;
      c.config.family = family;
      c.config.position = position;
      c.config.layers = 2;
      c.config.dim = 8;
      c.config.heads = 2;
      c.config.kvHeads = family == "llama" ? 1 : 2;
      c.config.ffn = 8;
      c.config.vocab = 30;
      c.config.maxPositions = int32_t(length * 2);
      c.config.seed = seed;
      c.config.task = TaskKind::Classifier;
      c.config.pool = PoolKind::Mean;
      c.config.vq = {{0, false, 1, 4}, {1, false, 1, 4}};
      c.minimalPlan = true;
      c.minLength = length;
      checked += fuzzOne(c, edits, seed++);
    }
  std::printf("checked %lld edits on documents of up to %lld tokens\n",
              (long long)checked, (long long)length);
  EXPECT_EQ(checked, 4 * edits);
}
