//===- ProgramTest.cpp - Program verification and file format -------------===//

#include "Checksum.h"
#include "ProgramBuilder.h"
#include "TestUtil.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Tokenizer.h"

#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <unistd.h>

using namespace incnn::runtime;
using namespace incnn::runtime::test;

namespace {

std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "incnn_" + std::to_string(::getpid()) + "_" +
         name;
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Program smallProgram() {
  DecoderConfig c;
  c.layers = 1;
  c.vq = {{0, true, 2, 4}};
  c.task = TaskKind::Classifier;
  return buildDecoder(c);
}

std::string serialized(const Program &p) {
  std::string path = tempPath("ser.incnn");
  Status st = writeProgram(p, path);
  EXPECT_TRUE(st.ok()) << st.error;
  std::string bytes = readFile(path);
  std::remove(path.c_str());
  return bytes;
}

//===----------------------------------------------------------------------===//
// Round trip
//===----------------------------------------------------------------------===//

TEST(ProgramFile, RoundTrip) {
  DecoderConfig c;
  c.family = "llama";
  c.position = "rope";
  c.kvHeads = 2;
  c.vq = {{1, false, 2, 8}};
  Program p = buildDecoder(c);
  p.bosTokenId = 1;
  p.eosTokenId = 2;
  p.tokenizer = std::string("tok\0bytes", 9);
  std::string path = tempPath("roundtrip.incnn");
  ASSERT_TRUE(writeProgram(p, path).ok());
  Program q;
  Status st = loadProgram(path, q);
  ASSERT_TRUE(st.ok()) << st.error;
  std::remove(path.c_str()); // the mapping stays valid
  EXPECT_EQ(q.family, p.family);
  EXPECT_EQ(q.task, p.task);
  EXPECT_EQ(q.vocabSize, p.vocabSize);
  EXPECT_EQ(q.maxPositions, p.maxPositions);
  EXPECT_EQ(q.positionScheme, p.positionScheme);
  EXPECT_EQ(q.labels, p.labels);
  EXPECT_EQ(q.bosTokenId, 1);
  EXPECT_EQ(q.eosTokenId, 2);
  EXPECT_EQ(q.padTokenId, -1);
  EXPECT_EQ(q.tokenizer, p.tokenizer);
  EXPECT_EQ(q.tokenValue, p.tokenValue);
  EXPECT_EQ(q.outputValue, p.outputValue);
  ASSERT_EQ(q.values.size(), p.values.size());
  for (size_t i = 0; i < p.values.size(); ++i) {
    EXPECT_EQ(q.values[i].width, p.values[i].width);
    EXPECT_EQ(q.values[i].perToken, p.values[i].perToken);
    EXPECT_EQ(q.values[i].name, p.values[i].name);
  }
  ASSERT_EQ(q.weights.size(), p.weights.size());
  for (size_t i = 0; i < p.weights.size(); ++i) {
    EXPECT_EQ(q.weights[i].name, p.weights[i].name);
    EXPECT_EQ(q.weights[i].shape, p.weights[i].shape);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q.weights[i].ptr()) % 64, 0u);
    EXPECT_TRUE(bitsEqual(q.weights[i].ptr(), p.weights[i].ptr(),
                          size_t(p.weights[i].numElements())));
  }
  ASSERT_EQ(q.instrs.size(), p.instrs.size());
  for (size_t i = 0; i < p.instrs.size(); ++i) {
    const Instr &a = p.instrs[i], &b = q.instrs[i];
    EXPECT_EQ(a.op, b.op);
    EXPECT_EQ(a.operands, b.operands);
    EXPECT_EQ(a.weights, b.weights);
    EXPECT_EQ(a.results, b.results);
    EXPECT_EQ(a.attrs.epsilon, b.attrs.epsilon);
    EXPECT_EQ(a.attrs.positionOffset, b.attrs.positionOffset);
    EXPECT_EQ(a.attrs.numHeads, b.attrs.numHeads);
    EXPECT_EQ(a.attrs.numKvHeads, b.attrs.numKvHeads);
    EXPECT_EQ(a.attrs.causal, b.attrs.causal);
    EXPECT_EQ(a.attrs.ropeTheta, b.attrs.ropeTheta);
    EXPECT_EQ(a.attrs.scale, b.attrs.scale);
    EXPECT_EQ(a.attrs.pool, b.attrs.pool);
  }
  // Same outputs, bit for bit.
  Evaluator e1(p), e2(q);
  std::vector<int32_t> toks = {3, 1, 4, 1, 5, 9, 2, 6};
  ASSERT_TRUE(e1.evaluate(toks).ok());
  ASSERT_TRUE(e2.evaluate(toks).ok());
  EXPECT_EQ(e1.output(), e2.output());

  // And from a buffer.
  Program r;
  std::string bytes = serialized(p);
  ASSERT_TRUE(loadProgramFromBuffer(bytes.data(), bytes.size(), r).ok());
  Evaluator e3(r);
  ASSERT_TRUE(e3.evaluate(toks).ok());
  EXPECT_EQ(e1.output(), e3.output());
}

TEST(ProgramFile, CopiedInMemoryProgramStaysValid) {
  Program p = smallProgram();
  Program copy = p;
  p = Program();
  EXPECT_TRUE(verifyProgram(copy).ok());
  Evaluator ev(copy);
  EXPECT_TRUE(ev.evaluate({1, 2}).ok());
}

//===----------------------------------------------------------------------===//
// Bad files
//===----------------------------------------------------------------------===//

Status loadBytes(const std::string &bytes) {
  Program p;
  return loadProgramFromBuffer(bytes.data(), bytes.size(), p);
}

/// Rewrites the checksum of a modified file image, so that a test reaches
/// the checks behind it.
std::string resealed(std::string bytes) {
  if (bytes.size() < kProgramHeaderSize)
    return bytes;
  uint64_t sum = programChecksum(
      reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  std::memcpy(&bytes[kChecksumOffset], &sum, 8);
  return bytes;
}

/// Replaces the metadata JSON of a serialized program.
std::string withMetadata(const std::string &bytes, const std::string &meta) {
  uint64_t oldLen;
  std::memcpy(&oldLen, bytes.data() + 16, 8);
  std::string out = bytes.substr(0, 16);
  uint64_t len = meta.size();
  out.append(reinterpret_cast<const char *>(&len), 8);
  out += bytes.substr(24, 8); // checksum
  out += meta;
  // Keep the data section at the same place when the length allows it.
  uint64_t oldData = (32 + oldLen + 63) / 64 * 64;
  while (out.size() < oldData)
    out.push_back(' ');
  out += bytes.substr(oldData);
  return resealed(out);
}

std::string metadataOf(const std::string &bytes) {
  uint64_t len;
  std::memcpy(&len, bytes.data() + 16, 8);
  return bytes.substr(32, len);
}

TEST(ProgramFile, MissingFile) {
  Program p;
  Status st = loadProgram("/nonexistent/dir/x.incnn", p);
  EXPECT_NE(st.error.find("cannot open"), std::string::npos) << st.error;
  st = loadProgram("/", p);
  EXPECT_FALSE(st.ok());
}

TEST(ProgramFile, TruncatedFilesFail) {
  std::string bytes = serialized(smallProgram());
  for (size_t len = 0; len < bytes.size(); len += (len < 200 ? 1 : 97)) {
    Status st = loadBytes(bytes.substr(0, len));
    EXPECT_FALSE(st.ok()) << "length " << len;
  }
  EXPECT_TRUE(loadBytes(bytes).ok());
}

TEST(ProgramFile, CorruptHeaders) {
  std::string bytes = serialized(smallProgram());
  std::string b = bytes;
  b[0] = 'X';
  EXPECT_NE(loadBytes(b).error.find("magic"), std::string::npos);
  b = bytes;
  b[8] = 99;
  EXPECT_NE(loadBytes(b).error.find("version"), std::string::npos);
  b = bytes;
  b[13] = 1;
  EXPECT_NE(loadBytes(resealed(b)).error.find("reserved"), std::string::npos);
  b = bytes;
  uint64_t huge = ~uint64_t(0);
  std::memcpy(&b[16], &huge, 8);
  EXPECT_NE(loadBytes(resealed(b)).error.find("metadata length"),
            std::string::npos);
  b = bytes;
  b[32] = '#';
  EXPECT_NE(loadBytes(resealed(b)).error.find("JSON"), std::string::npos);
  EXPECT_NE(loadBytes(b).error.find("checksum mismatch"), std::string::npos);
}

TEST(ProgramFile, CorruptMetadata) {
  std::string bytes = serialized(smallProgram());
  std::string meta = metadataOf(bytes);
  auto replaced = [&](const std::string &from, const std::string &to) {
    std::string m = meta;
    size_t at = m.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    m.replace(at, from.size(), to);
    return loadBytes(withMetadata(bytes, m));
  };
  EXPECT_FALSE(replaced("\"task\":\"classifier\"", "\"task\":7").ok());
  EXPECT_FALSE(replaced("\"task\":\"classifier\"", "\"task\":\"x\"").ok());
  EXPECT_FALSE(replaced("\"vocab_size\":50", "\"vocab_size\":-5").ok());
  EXPECT_FALSE(replaced("\"vocab_size\":50", "\"vocab_size\":1e400").ok());
  EXPECT_FALSE(replaced("\"offset\":0", "\"offset\":3").ok()); // misaligned
  EXPECT_FALSE(replaced("\"offset\":0", "\"offset\":6400000").ok());
  EXPECT_FALSE(replaced("\"values\":[", "\"values\":{").ok());
  EXPECT_FALSE(
      replaced("\"values\":[", "\"values\":[[[[[[[[[[[[[[[[[[[[[[").ok());
  EXPECT_FALSE(replaced("\"shape\":[", "\"shape\":[99999999999,").ok());
  EXPECT_FALSE(replaced("\"shape\":[", "\"shape\":[-1,").ok());
  EXPECT_FALSE(replaced("\"op\":1", "\"op\":77").ok());
  EXPECT_FALSE(replaced("\"op\":1", "\"op\":\"embed\"").ok());
  EXPECT_FALSE(
      replaced("\"epsilon\":9.999999747378752e-06", "\"epsilon\":null").ok());
  // Deep nesting is rejected without recursion trouble.
  EXPECT_FALSE(loadBytes(withMetadata(bytes, std::string(100000, '[') +
                                                 std::string(100000, ']')))
                   .ok());
  EXPECT_FALSE(loadBytes(withMetadata(bytes, "[]")).ok());
  EXPECT_FALSE(loadBytes(withMetadata(bytes, "")).ok());
}

TEST(ProgramFile, EveryByteFlipIsCaught) {
  // Weights, tokenizer, metadata, padding and header: every flipped bit of
  // the file is refused with a clear message.
  std::string bytes = serialized(smallProgram());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string b = bytes;
    b[i] ^= char(1 << (i % 8));
    Status st = loadBytes(b);
    ASSERT_FALSE(st.ok()) << "byte " << i;
    if (i >= 16)
      EXPECT_NE(st.error.find("checksum mismatch"), std::string::npos)
          << "byte " << i << ": " << st.error;
  }
}

TEST(ProgramFile, RandomByteFlipsNeverCrash) {
  // Resealed after the flips, so the parser and verifier behind the
  // checksum see them.
  std::string bytes = serialized(smallProgram());
  std::mt19937 rng(12);
  int ok = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string b = bytes;
    int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f)
      b[rng() % b.size()] ^= char(1 << (rng() % 8));
    b = resealed(b);
    Program p;
    if (loadProgramFromBuffer(b.data(), b.size(), p).ok()) {
      ++ok;
      // Whatever loads must also evaluate without crashing.
      Evaluator ev(p, EvaluatorOptions{1});
      (void)ev.evaluate({1, 2, 3});
    }
  }
  EXPECT_GT(ok, 0); // flips in weight data keep the program valid
}

//===----------------------------------------------------------------------===//
// Verification
//===----------------------------------------------------------------------===//

/// Finds the first instruction with opcode `op`.
Instr &first(Program &p, OpCode op) {
  for (Instr &in : p.instrs)
    if (in.op == op)
      return in;
  throw std::runtime_error("no such op");
}

void expectInvalid(const std::function<void(Program &)> &mutate,
                   const std::string &message) {
  Program p = smallProgram();
  ASSERT_TRUE(verifyProgram(p).ok());
  mutate(p);
  Status st = verifyProgram(p);
  EXPECT_FALSE(st.ok()) << "expected: " << message;
  EXPECT_NE(st.error.find(message), std::string::npos)
      << "got: " << st.error << "\nexpected: " << message;
  // Invalid programs are also refused by the writer.
  EXPECT_FALSE(writeProgram(p, tempPath("invalid.incnn")).ok());
}

TEST(VerifyProgram, RejectsBadPrograms) {
  expectInvalid([](Program &p) { p.vocabSize = 0; }, "vocabSize");
  expectInvalid([](Program &p) { p.maxPositions = 0; }, "maxPositions");
  expectInvalid([](Program &p) { p.positionScheme = "alibi"; },
                "position scheme");
  expectInvalid([](Program &p) { p.values[3].width = 0; }, "bad width");
  expectInvalid([](Program &p) { p.tokenValue = 999; }, "token value");
  expectInvalid([](Program &p) { p.values[p.tokenValue].width = 2; },
                "token value");
  expectInvalid([](Program &p) { p.instrs[3].operands[0] = 999; },
                "out of range");
  expectInvalid([](Program &p) { p.instrs[3].results[0] = 999; },
                "out of range");
  expectInvalid([](Program &p) { p.instrs[3].weights[0] = -1; }, "weight id");
  expectInvalid([](Program &p) { std::swap(p.instrs[2], p.instrs[3]); },
                "used before it is defined");
  expectInvalid([](Program &p) { p.instrs[3].results = p.instrs[2].results; },
                "defined twice");
  expectInvalid([](Program &p) { p.instrs[0].op = OpCode(77); },
                "unknown opcode");
  expectInvalid([](Program &p) { first(p, OpCode::Embed).weights = {3}; },
                "embedding table");
  expectInvalid(
      [](Program &p) {
        first(p, OpCode::AddLearnedPositions).attrs.positionOffset = 50;
      },
      "position table");
  expectInvalid(
      [](Program &p) { first(p, OpCode::LayerNorm).attrs.epsilon = -1; },
      "epsilon");
  expectInvalid(
      [](Program &p) {
        Instr &ln = first(p, OpCode::LayerNorm);
        ln.weights.push_back(ln.weights[0]);
        ln.weights.push_back(ln.weights[0]);
      },
      "wrong number of weights");
  expectInvalid(
      [](Program &p) {
        Instr &lin = first(p, OpCode::Linear);
        p.weights[lin.weights[0]].shape = {32, 31};
        p.weights[lin.weights[0]].owned.resize(32 * 31);
      },
      "linear weight");
  expectInvalid(
      [](Program &p) {
        Instr &lin = first(p, OpCode::Linear);
        p.weights[lin.weights[1]].shape = {31};
        p.weights[lin.weights[1]].owned.resize(31);
      },
      "linear bias");
  expectInvalid(
      [](Program &p) { first(p, OpCode::Attention).attrs.numKvHeads = 3; },
      "multiple of numKvHeads");
  expectInvalid(
      [](Program &p) {
        Instr &a = first(p, OpCode::Attention);
        a.attrs.numHeads = 5;
        a.attrs.numKvHeads = 5;
      },
      "not a multiple of numHeads");
  expectInvalid(
      [](Program &p) {
        Instr &a = first(p, OpCode::Attention);
        a.attrs.numHeads = 2;
        a.attrs.numKvHeads = 1;
      },
      "k/v width");
  expectInvalid(
      [](Program &p) {
        Instr &a = first(p, OpCode::Attention);
        a.attrs.numHeads = 32;
        a.attrs.numKvHeads = 32;
        a.attrs.ropeTheta = 10000;
      },
      "even head dimension");
  expectInvalid(
      [](Program &p) {
        Instr &vq = first(p, OpCode::VectorQuantize);
        p.weights[vq.weights[0]].shape = {2, 4, 15};
        p.weights[vq.weights[0]].owned.resize(2 * 4 * 15);
      },
      "codebook");
  expectInvalid(
      [](Program &p) {
        Instr &vq = first(p, OpCode::VectorQuantize);
        p.values[vq.results[1]].width = 3;
      },
      "codes result");
  expectInvalid(
      [](Program &p) { first(p, OpCode::Pool).attrs.pool = PoolKind(5); },
      "pool kind");
  expectInvalid([](Program &p) { p.outputValue = 3; },
                "only a token classifier's output is per token");
  expectInvalid([](Program &p) { p.task = TaskKind::TokenClassifier; },
                "a token classifier's output must be per token");
  expectInvalid([](Program &p) { p.outputValue = 9999; }, "output value");
  expectInvalid([](Program &p) { p.labels.push_back("extra"); }, "label count");
  expectInvalid([](Program &p) { p.task = TaskKind::CausalLM; }, "vocabSize");
  expectInvalid([](Program &p) { p.weights[0].owned.resize(3); },
                "no data of the right size");
  expectInvalid(
      [](Program &p) {
        p.weights[0].shape = {0, 5};
      },
      "non-positive");
}

//===----------------------------------------------------------------------===//
// Tokenizer
//===----------------------------------------------------------------------===//

TEST(Tokenizer, EncodeDecodeWithTrainedModel) {
  std::string corpus = tempPath("corpus.txt");
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 200; ++i)
      out << "the quick brown fox jumps over the lazy dog " << i << "\n"
          << "incremental networks reuse work after small edits\n";
  }
  std::string prefix = tempPath("spm");
  auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus + " --model_prefix=" + prefix +
      " --vocab_size=60 --model_type=bpe --minloglevel=2");
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::string model = readFile(prefix + ".model");
  std::unique_ptr<Tokenizer> tok;
  Status s = Tokenizer::create(model, tok);
  ASSERT_TRUE(s.ok()) << s.error;
  EXPECT_EQ(tok->vocabSize(), 60);
  std::vector<int32_t> ids;
  ASSERT_TRUE(tok->encode("the lazy fox", ids).ok());
  EXPECT_FALSE(ids.empty());
  EXPECT_NE(ids.front(), 1); // no BOS
  std::string text;
  ASSERT_TRUE(tok->decode(ids, text).ok());
  EXPECT_EQ(text, "the lazy fox");
  EXPECT_FALSE(tok->decode({-1}, text).ok());
  EXPECT_FALSE(Tokenizer::create("garbage", tok).ok());
  std::remove(corpus.c_str());
  std::remove((prefix + ".model").c_str());
  std::remove((prefix + ".vocab").c_str());
}

} // namespace

namespace {

/// A classifier with one one-group VQ under the minimal cache plan.
Program minimalPlanProgram(DecoderConfig &c) {
  c.vq = {{0, false, 1, 4}};
  c.task = TaskKind::Classifier;
  Program p = buildDecoder(c);
  planCache(p, true);
  return p;
}

TEST(ProgramSteps, InsufficientCachePlanIsRejectedAtLoad) {
  // The minimal plan verifies; dropping any value it needs is an error that
  // names the value and the step, in memory and when a file is loaded.
  DecoderConfig c;
  Program p = minimalPlanProgram(c);
  ASSERT_TRUE(verifyProgram(p).ok()) << verifyProgram(p).error;
  std::string bytes = serialized(p);
  int checked = 0;
  for (size_t v = 0; v < p.values.size(); ++v) {
    if (!p.values[v].perToken || !p.values[v].keepAllRows ||
        int32_t(v) == p.tokenValue)
      continue;
    Program q = p;
    q.values[v].keepAllRows = false;
    Status st = verifyProgram(q);
    ASSERT_FALSE(st.ok()) << "value " << v;
    EXPECT_NE(st.error.find("the cache plan does not keep value " +
                            std::to_string(v)),
              std::string::npos)
        << st.error;
    EXPECT_NE(st.error.find("step "), std::string::npos) << st.error;
    ++checked;
  }
  EXPECT_GT(checked, 3);
  // A file whose metadata asks for too little is refused by the loader.
  size_t first = 0;
  while (!p.values[first].perToken || !p.values[first].keepAllRows ||
         int32_t(first) == p.tokenValue)
    ++first;
  std::string meta = metadataOf(bytes);
  size_t at = meta.find("\"values\":[");
  for (size_t v = 0; v <= first; ++v)
    at = meta.find("\"keep_all_rows\":", at + 1);
  ASSERT_EQ(meta.compare(at, 20, "\"keep_all_rows\":true"), 0);
  meta.replace(at, 20, "\"keep_all_rows\":false");
  Status st = loadBytes(withMetadata(bytes, meta));
  EXPECT_NE(st.error.find("the cache plan does not keep value " +
                          std::to_string(first)),
            std::string::npos)
      << st.error;
}

TEST(ProgramSteps, TableRowsOnlyWhereEveryRowIsATableRow) {
  // A one-group VQ's codewords (codes kept) are read from the codebook; the
  // flag survives a file, and a value whose rows are not table rows, or
  // whose old rows a step reads, is refused when marked.
  DecoderConfig c;
  Program p = minimalPlanProgram(c);
  ASSERT_TRUE(verifyProgram(p).ok()) << verifyProgram(p).error;
  int marked = 0;
  for (const ValueInfo &v : p.values)
    marked += v.tableRows;
  ASSERT_GE(marked, 1);
  Program loaded;
  std::string bytes = serialized(p);
  ASSERT_TRUE(loadProgramFromBuffer(bytes.data(), bytes.size(), loaded).ok());
  for (size_t v = 0; v < p.values.size(); ++v)
    EXPECT_EQ(loaded.values[v].tableRows, p.values[v].tableRows) << v;
  Program stored = p;
  for (ValueInfo &v : stored.values)
    v.tableRows = false;
  EXPECT_EQ(cacheBytesPerToken(stored) - cacheBytesPerToken(p),
            4 * c.dim * marked);
  int refused = 0;
  for (size_t v = 0; v < p.values.size(); ++v) {
    if (p.values[v].tableRows || !p.values[v].perToken ||
        !p.values[v].keepAllRows || int32_t(v) == p.tokenValue)
      continue;
    Program q = p;
    q.values[v].tableRows = true;
    Status st = verifyProgram(q);
    ASSERT_FALSE(st.ok()) << "value " << v;
    EXPECT_NE(st.error.find("is marked table_rows"), std::string::npos)
        << st.error;
    ++refused;
  }
  EXPECT_GT(refused, 3);
}

TEST(ProgramSteps, MalformedStepListsAreRejected) {
  Program base = buildDecoder(DecoderConfig{});
  ASSERT_TRUE(verifyProgram(base).ok());
  auto expectError = [&](const std::function<void(Program &)> &mutate,
                         const std::string &message) {
    Program p = base;
    mutate(p);
    Status st = verifyProgram(p);
    EXPECT_NE(st.error.find(message), std::string::npos)
        << "expected '" << message << "', got '" << st.error << "'";
  };
  expectError([](Program &p) { p.steps.clear(); }, "no change-propagation");
  expectError([](Program &p) { p.steps.pop_back(); }, "is updated by no step");
  expectError([](Program &p) { p.steps[1].inputs = {p.numRowSets - 1}; },
              "before any step writes it");
  expectError([](Program &p) { p.steps[2].output = p.steps[1].output; },
              "must write a fresh row set");
  expectError(
      [](Program &p) {
        for (Step &s : p.steps)
          if (s.kind == StepKind::RecomputeRows)
            s.kind = StepKind::PoolUpdate;
      },
      "cannot update instruction");
  expectError([](Program &p) { p.outputRows = 0; }, "the output row set");
  // A step that misses rows its operands change (the outputs would differ
  // from a from-scratch run, silently): the last attention taking its keys'
  // and values' changes, or the last recomputed value its operands', only
  // at the edited rows.
  for (StepKind kind : {StepKind::AttentionUpdate, StepKind::RecomputeRows})
    expectError(
        [kind](Program &p) {
          for (size_t i = p.steps.size(); i-- > 0;)
            if (p.steps[i].kind == kind) {
              p.steps[i].inputs.back() = p.steps[0].output;
              return;
            }
        },
        "which does not hold every row the update changes");
}

} // namespace
