//===- DocumentTest.cpp - incremental tokenization of text edits ----------===//
//
// Differential tests: after every text edit, the document's tokens (and
// their byte offsets) equal a full tokenization of its text, and the
// session's output equals a from-scratch run.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Document.h"
#include "incnn/runtime/Runtime.h"

#include "ProgramBuilder.h"
#include "TrainTokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

using namespace incnn::runtime;

namespace {

std::unique_ptr<Tokenizer> makeTokenizer(const std::string &type) {
  std::unique_ptr<Tokenizer> t;
  EXPECT_TRUE(Tokenizer::create(incnn::test::trainTokenizer(type), t).ok());
  return t;
}

Program classifier(int32_t vocab, int32_t maxPositions) {
  DecoderConfig c;
  c.position = "none";
  c.vocab = vocab;
  c.maxPositions = maxPositions;
  c.task = TaskKind::Classifier;
  c.pool = PoolKind::Mean;
  c.vq = {{0, false, 1, 4}};
  return buildDecoder(c);
}

// Pieces that stress the tokenizer: words it knows, whitespace runs, tabs
// and newlines (normalized to spaces), accented letters it knows, and CJK
// and emoji it does not (byte-fallback pieces).
const std::vector<std::string> kPieces = {"the",
                                          "quick",
                                          "brown",
                                          "fox",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\n\n",
                                          "\t",
                                          "dog",
                                          "5",
                                          "42",
                                          ".",
                                          ",",
                                          "(",
                                          ")",
                                          "-",
                                          "caf",
                                          "\xc3\xa9",
                                          "\xc3\xbc"
                                          "ber",
                                          "\xe2\x82\xac",
                                          "\xe4\xb8\xad",
                                          "\xf0\x9f\x98\x80",
                                          "incremental",
                                          "edits",
                                          "xyz",
                                          "   \t "};

std::string randomText(std::mt19937 &rng, int pieces) {
  std::string text;
  for (int i = 0; i < pieces; ++i) {
    text += kPieces[rng() % kPieces.size()];
    if (rng() % 3 != 0)
      text += ' ';
  }
  return text;
}

/// A random byte offset snapped down to a UTF-8 character start.
int64_t randomBoundary(std::mt19937 &rng, const std::string &text) {
  int64_t i = int64_t(rng() % (text.size() + 1));
  while (!isUtf8Boundary(text, i))
    --i;
  return i;
}

struct Stats {
  int64_t edits = 0, rejected = 0, retokenized = 0, textBytes = 0;
};

/// Random edits on a `pieces`-piece document; every `checkEvery`-th edit is
/// also compared with a from-scratch run.
Stats runRandomEdits(const Tokenizer &tokenizer, int32_t maxPositions,
                     int pieces, int edits, int checkEvery, uint32_t seed) {
  Program program = classifier(tokenizer.vocabSize(), maxPositions);
  Session session(program, {1});
  Evaluator oracle(program, {1});
  Document doc(session, tokenizer);
  std::mt19937 rng(seed);
  EXPECT_TRUE(doc.reset(randomText(rng, pieces)).ok());
  Stats stats;
  for (int i = 0; i < edits; ++i) {
    const std::string &text = doc.text();
    int64_t start = randomBoundary(rng, text), end = start;
    int kind = int(rng() % 4);
    if (kind != 0) // delete or replace a short range
      end = std::min<int64_t>(int64_t(text.size()), start + rng() % 12);
    while (!isUtf8Boundary(text, end))
      ++end;
    std::string replacement =
        kind == 1 ? "" : randomText(rng, 1 + int(rng() % 3));
    if (rng() % 5 == 0) { // occasionally a bad offset: inside a character
      auto it = std::find_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
      });
      if (it != text.end()) {
        std::string before = doc.text();
        std::vector<int32_t> tokensBefore = session.tokens();
        int64_t inside = int64_t(it - text.begin());
        EXPECT_FALSE(doc.applyText(inside, inside, "x").ok());
        EXPECT_EQ(doc.text(), before);
        EXPECT_EQ(session.tokens(), tokensBefore);
        ++stats.rejected;
      }
    }
    Document::EditResult r;
    Status st = doc.applyText(start, end, replacement, &r);
    if (!st.ok()) { // an edit that leaves no tokens
      EXPECT_NE(st.error.find("no tokens"), std::string::npos) << st.error;
      continue;
    }
    ++stats.edits;
    stats.retokenized += r.retokenizedBytes;
    stats.textBytes += int64_t(doc.text().size());
    Status tokens = doc.verifyTokens();
    EXPECT_TRUE(tokens.ok()) << "edit " << i << ": " << tokens.error;
    if (!tokens.ok())
      break;
    if (i % checkEvery == 0) {
      EXPECT_TRUE(oracle.evaluate(session.tokens()).ok());
      EXPECT_EQ(oracle.output(), session.output()) << "edit " << i;
    }
  }
  return stats;
}

} // namespace

TEST(Document, BpeTokenizerCutsAtSpaces) {
  auto bpe = makeTokenizer("bpe");
  EXPECT_TRUE(bpe->cutsAtSpaces());
  auto unigram = makeTokenizer("unigram");
  EXPECT_FALSE(unigram->cutsAtSpaces());
  EXPECT_TRUE(isCut("a b", 1));
  EXPECT_FALSE(isCut("a  b", 1));
  EXPECT_FALSE(isCut(" b", 0));
  EXPECT_FALSE(isCut("a\tb", 1));
  EXPECT_FALSE(isCut("\xc3\xa9 b", 2));
}

TEST(Document, IncrementalTokensEqualFullTokenization) {
  auto tokenizer = makeTokenizer("bpe");
  Stats s = runRandomEdits(*tokenizer, 4096, 400, 1000, 50, 7);
  EXPECT_GT(s.edits, 900);
  EXPECT_GT(s.rejected, 100);
  // Incremental: the tokenizer reads a small part of the text per edit.
  EXPECT_LT(double(s.retokenized), 0.05 * double(s.textBytes));
}

TEST(Document, EditsAcrossTheWindowEndStayExact) {
  auto tokenizer = makeTokenizer("bpe");
  Stats s = runRandomEdits(*tokenizer, 48, 60, 400, 1, 11);
  EXPECT_GT(s.edits, 350);
}

TEST(Document, UnigramTokenizerRetokenizesEverything) {
  auto tokenizer = makeTokenizer("unigram");
  Stats s = runRandomEdits(*tokenizer, 4096, 100, 200, 10, 3);
  EXPECT_GT(s.edits, 180);
  EXPECT_EQ(s.retokenized, s.textBytes);
}

TEST(Document, BatchesOfTextEditsEqualFullTokenization) {
  auto tokenizer = makeTokenizer("bpe");
  Program program = classifier(tokenizer->vocabSize(), 4096);
  Session session(program, {1});
  Evaluator oracle(program, {1});
  Document doc(session, *tokenizer);
  std::mt19937 rng(5);
  ASSERT_TRUE(doc.reset(randomText(rng, 300)).ok());
  for (int i = 0; i < 100; ++i) {
    // Edits apply in order, each to the text the previous one left.
    std::vector<TextEdit> edits;
    std::string text = doc.text();
    for (int j = 0; j < 1 + int(rng() % 4); ++j) {
      int64_t start = randomBoundary(rng, text), end = start;
      while (end < int64_t(text.size()) && rng() % 3 != 0)
        ++end;
      while (!isUtf8Boundary(text, end))
        ++end;
      std::string rep = randomText(rng, int(rng() % 3));
      text.replace(size_t(start), size_t(end - start), rep);
      edits.push_back({start, end, rep});
    }
    Document::Plan plan;
    ASSERT_TRUE(doc.plan(edits, plan).ok());
    EXPECT_EQ(plan.text, text);
    ASSERT_TRUE(doc.commit(std::move(plan)).ok());
    Status tokens = doc.verifyTokens();
    ASSERT_TRUE(tokens.ok()) << "batch " << i << ": " << tokens.error;
    if (i % 5 != 0)
      continue;
    ASSERT_TRUE(oracle.evaluate(session.tokens()).ok());
    ASSERT_EQ(oracle.output(), session.output()) << "batch " << i;
  }
}
