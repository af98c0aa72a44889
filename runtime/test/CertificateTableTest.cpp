//===- CertificateTableTest.cpp - the program's certificate chains --------===//
//
// The certificate table (docs/program-format.md): written and read back,
// its structure checked, its norm claims proven rather than trusted
// (SpectralBound.cpp), older files loaded with the chains the runtime finds
// itself, and tighter bounds certifying more rows with every output exact.
//
//===----------------------------------------------------------------------===//

#include "CertificateChains.h"
#include "Checksum.h"
#include "ProgramBuilder.h"
#include "TestUtil.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"

#include <Eigen/Core>
#include <Eigen/SVD>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <unistd.h>

using namespace incnn::runtime;

namespace {

/// Two layers, each with a VQ site after the attention's output projection.
Program chainProgram(uint32_t seed = 1) {
  DecoderConfig c;
  c.layers = 2;
  c.vq = {{0, false, 1, 4}, {1, false, 2, 4}};
  c.task = TaskKind::Classifier;
  c.seed = seed;
  return buildDecoder(c);
}

std::string serialized(const Program &p) {
  std::string path = ::testing::TempDir() + "incnn_cert_" +
                     std::to_string(::getpid()) + ".incnn";
  Status st = writeProgram(p, path);
  EXPECT_TRUE(st.ok()) << st.error;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::remove(path.c_str());
  return ss.str();
}

/// The file with its metadata edited by `edit` (and its version replaced),
/// checksum resealed. Weight offsets are relative to the data section, which
/// moves with the metadata's length.
std::string edited(const std::string &bytes,
                   const std::function<void(nlohmann::json &)> &edit,
                   uint32_t version = kProgramVersion) {
  uint64_t len;
  std::memcpy(&len, bytes.data() + 16, 8);
  nlohmann::json meta = nlohmann::json::parse(bytes.substr(32, len));
  edit(meta);
  std::string text = meta.dump();
  std::string out = bytes.substr(0, 8);
  out.append(reinterpret_cast<const char *>(&version), 4);
  out += bytes.substr(12, 4);
  uint64_t newLen = text.size();
  out.append(reinterpret_cast<const char *>(&newLen), 8);
  out += bytes.substr(24, 8);
  out += text;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  out += bytes.substr((32 + len + 63) / 64 * 64);
  uint64_t sum = programChecksum(reinterpret_cast<const uint8_t *>(out.data()),
                                 out.size());
  std::memcpy(&out[kChecksumOffset], &sum, 8);
  return out;
}

Status loadBytes(const std::string &bytes, Program &p) {
  return loadProgramFromBuffer(bytes.data(), bytes.size(), p);
}

double largestSingularValue(const float *w, int64_t rows, int64_t cols) {
  Eigen::MatrixXd m(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      m(r, k) = w[r * cols + k];
  return Eigen::BDCSVD<Eigen::MatrixXd>(m).singularValues()(0);
}

const Weight &linearWeight(const Program &p, const CertificateChain &c) {
  return p.weights[size_t(p.instrs[size_t(c.linear)].weights[0])];
}

} // namespace

TEST(CertificateTable, CompilerChainsRoundTrip) {
  Program p = chainProgram();
  ASSERT_EQ(p.certificateChains.size(), 2u);
  for (const CertificateChain &c : p.certificateChains) {
    EXPECT_EQ(p.instrs[size_t(c.attention)].op, OpCode::Attention);
    EXPECT_EQ(p.instrs[size_t(c.linear)].op, OpCode::Linear);
    EXPECT_EQ(p.instrs[size_t(c.vq)].op, OpCode::VectorQuantize);
    LinearNorms norms = linearNorms(p, p.instrs[size_t(c.linear)]);
    EXPECT_TRUE(usesClaimedBound(p, c, norms));
    EXPECT_LT(c.normBound, norms.elementwise);
  }
  ASSERT_TRUE(verifyProgram(p).ok()) << verifyProgram(p).error;
  Program q;
  Status st = loadBytes(serialized(p), q);
  ASSERT_TRUE(st.ok()) << st.error;
  ASSERT_EQ(q.certificateChains.size(), p.certificateChains.size());
  for (size_t i = 0; i < p.certificateChains.size(); ++i) {
    const CertificateChain &a = p.certificateChains[i],
                           &b = q.certificateChains[i];
    EXPECT_EQ(a.attention, b.attention);
    EXPECT_EQ(a.linear, b.linear);
    EXPECT_EQ(a.vq, b.vq);
    EXPECT_EQ(a.normBound, b.normBound); // bit for bit through the JSON
  }
  std::string text = printProgram(q);
  EXPECT_NE(text.find("certificates: 2 chains"), std::string::npos) << text;
  EXPECT_NE(text.find("x tighter)"), std::string::npos) << text;
}

TEST(CertificateTable, ClaimsAreProvenNotTrusted) {
  Program p = chainProgram();
  CertificateChain &c = p.certificateChains[0];
  const Weight &w = linearWeight(p, c);
  double sigma = largestSingularValue(w.ptr(), w.shape[0], w.shape[1]);
  // Honest claims pass, down to a hair above sigma_max.
  for (double claim : {sigma * (1 + 1e-6), sigma * (1 + 1e-8)}) {
    c.normBound = claim;
    EXPECT_TRUE(verifyProgram(p).ok()) << claim << " " << sigma;
  }
  // Claims below sigma_max are refused, however close.
  for (double claim : {sigma * (1 - 1e-9), sigma * 0.9, sigma * 1e-3}) {
    c.normBound = claim;
    Status st = verifyProgram(p);
    ASSERT_FALSE(st.ok()) << claim;
    EXPECT_NE(st.error.find("certificate chain 0"), std::string::npos)
        << st.error;
    EXPECT_NE(st.error.find("does not hold"), std::string::npos) << st.error;
  }
  // A claim no tighter than the runtime's own bound is not used.
  LinearNorms norms = linearNorms(p, p.instrs[size_t(c.linear)]);
  c.normBound = norms.elementwise * 2;
  EXPECT_TRUE(verifyProgram(p).ok());
  EXPECT_EQ(chainNormBound(p, c, norms), norms.elementwise);

  // The same through a file: a forged claim is refused at load.
  c.normBound = sigma * (1 + 1e-6);
  std::string bytes = serialized(p);
  Program q;
  Status st = loadBytes(edited(bytes,
                               [&](nlohmann::json &m) {
                                 m["certificates"][0]["norm_bound"] =
                                     sigma * 0.5;
                               }),
                        q);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error.find("invalid program: certificate chain 0"),
            std::string::npos)
      << st.error;
  EXPECT_NE(st.error.find("recompile the model with incnn-compile"),
            std::string::npos)
      << st.error;
}

TEST(CertificateTable, StructureIsChecked) {
  const Program base = chainProgram();
  const CertificateChain good = base.certificateChains[0];
  auto refused = [&](const std::function<void(Program &)> &mutate,
                     const std::string &message) {
    Program p = base;
    mutate(p);
    Status st = verifyProgram(p);
    EXPECT_FALSE(st.ok()) << message;
    EXPECT_NE(st.error.find(message), std::string::npos) << st.error;
  };
  const std::string notAChain = "not a chain";
  refused([&](Program &p) { p.certificateChains[0].attention += 1; },
          notAChain);
  refused([&](Program &p) { p.certificateChains[0].linear = -1; }, notAChain);
  refused(
      [&](Program &p) {
        p.certificateChains[0].linear = p.certificateChains[1].linear;
      },
      notAChain);
  refused([&](Program &p) { p.certificateChains[0].vq = good.attention; },
          "not a vector_quantize instruction");
  refused([&](Program &p) { p.certificateChains[0].vq = -1; },
          "not a vector_quantize instruction");
  refused([&](Program &p) { p.certificateChains[0].vq = 1 << 20; },
          "not a vector_quantize instruction");
  refused([&](Program &p) { p.certificateChains.push_back(good); },
          "a second chain for the same vector_quantize");
  for (double bad : {-1.0, std::nan(""), double(INFINITY)})
    refused([&](Program &p) { p.certificateChains[0].normBound = bad; },
            "must be finite and >= 0");
  // The quantizer's input read twice (the residual add reads it instead of
  // the quantized value): no chain there.
  refused(
      [&](Program &p) {
        const Instr &vq = p.instrs[size_t(good.vq)];
        for (Instr &in : p.instrs)
          for (int32_t &v : in.operands)
            if (in.op == OpCode::Add && v == vq.results[0])
              v = vq.operands[0];
        addChangeSteps(p);
        ASSERT_EQ(p.certificateChains.size(), 1u);
        p.certificateChains = base.certificateChains;
      },
      "the program admits none here");
}

/// attention -> vector_quantize directly (no linear), as ContractTest
/// builds it.
Program tinyChain() {
  Program p;
  ProgramBuilder b(p);
  std::mt19937 rng(3);
  p.family = "opt";
  p.task = TaskKind::Classifier;
  p.vocabSize = 8;
  p.maxPositions = 16;
  p.positionScheme = "none";
  p.tokenValue = b.value(1, true, "tokens");
  int32_t emb = b.randomWeight("embed", {8, 4}, 1.0f, rng);
  int32_t x = b.op(OpCode::Embed, {p.tokenValue}, {emb}, 4);
  auto proj = [&](const char *name) {
    return b.op(OpCode::Linear, {x}, {b.randomWeight(name, {4, 4}, 1.0f, rng)},
                4);
  };
  int32_t q = proj("wq"), k = proj("wk"), v = proj("wv");
  InstrAttrs a;
  a.numHeads = a.numKvHeads = 1;
  a.scale = 0.5f;
  int32_t att = b.op(OpCode::Attention, {q, k, v}, {}, 4, true, a);
  int32_t cb = b.randomWeight("codebook", {1, 3, 4}, 1.0f, rng);
  int32_t quant = b.value(4), codes = b.value(1);
  b.instr(OpCode::VectorQuantize, {att}, {cb}, {quant, codes});
  InstrAttrs last;
  int32_t pooled = b.op(OpCode::Pool, {quant}, {}, 4, false, last);
  p.outputValue = b.op(OpCode::Linear, {pooled},
                       {b.randomWeight("head", {2, 4}, 1, rng)}, 2, false);
  addChangeSteps(p);
  return p;
}

TEST(CertificateTable, ChainsWithoutALinearClaimNoNorm) {
  Program p = tinyChain();
  ASSERT_EQ(p.certificateChains.size(), 1u);
  EXPECT_EQ(p.certificateChains[0].linear, -1);
  EXPECT_EQ(p.certificateChains[0].normBound, 0.0);
  ASSERT_TRUE(verifyProgram(p).ok()) << verifyProgram(p).error;
  p.certificateChains[0].normBound = 1.0;
  Status st = verifyProgram(p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error.find("without a linear instruction"), std::string::npos)
      << st.error;
}

TEST(CertificateTable, OlderVersionsFindTheChainsThemselves) {
  Program p = chainProgram();
  std::string bytes = serialized(p);
  // A version-4 file has no table (one here is ignored): the loader finds
  // the chains and makes no claims, so sessions use the elementwise bound.
  for (bool withTable : {false, true}) {
    Program q;
    Status st = loadBytes(edited(
                              bytes,
                              [&](nlohmann::json &m) {
                                if (!withTable)
                                  m.erase("certificates");
                                else
                                  m["certificates"][0]["norm_bound"] = 1e-9;
                              },
                              4),
                          q);
    ASSERT_TRUE(st.ok()) << st.error;
    ASSERT_EQ(q.certificateChains.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(q.certificateChains[i].vq, p.certificateChains[i].vq);
      EXPECT_EQ(q.certificateChains[i].linear, p.certificateChains[i].linear);
      EXPECT_EQ(q.certificateChains[i].normBound, 0.0);
    }
    EXPECT_NE(printProgram(q).find("elementwise\n"), std::string::npos);
  }
  // Before version 3: refused, naming the versions and the fix.
  Program q;
  Status st = loadBytes(edited(
                            bytes, [](nlohmann::json &) {}, 2),
                        q);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error.find("unsupported program version 2"), std::string::npos)
      << st.error;
  EXPECT_NE(st.error.find("recompile"), std::string::npos) << st.error;
}

TEST(CertificateTable, TighterBoundsCertifyMoreRowsExactly) {
  // The same program and edits with the compiler's claims and with none
  // (the elementwise bound): both exact, the claims certify more rows.
  int64_t certified[2] = {0, 0};
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    DecoderConfig c;
    c.dim = 16;
    c.ffn = 24;
    c.vocab = 40;
    c.maxPositions = 48;
    c.position = "none";
    c.seed = seed;
    c.task = TaskKind::Classifier;
    c.vq = {{0, false, 1, 4}, {1, false, 2, 4}};
    Program tight = buildDecoder(c);
    for (const Instr &in : tight.instrs)
      if (in.op == OpCode::VectorQuantize)
        for (float &x : tight.weights[size_t(in.weights[0])].owned)
          x *= 2.0f; // wide margins
    Program loose = tight;
    for (CertificateChain &ch : loose.certificateChains)
      ch.normBound = 0.0;
    ASSERT_TRUE(verifyProgram(tight).ok());
    ASSERT_TRUE(verifyProgram(loose).ok());
    Session a(tight, {1, true}), b(loose, {1, true});
    Evaluator oracle(tight, {1});
    std::mt19937 rng(seed);
    std::vector<int32_t> tokens(40);
    for (int32_t &t : tokens)
      t = int32_t(rng() % 40);
    ASSERT_TRUE(a.reset(tokens).ok());
    ASSERT_TRUE(b.reset(tokens).ok());
    for (int e = 0; e < 60; ++e) {
      TokenEdit edit =
          TokenEdit::replace(int64_t(rng() % 40), {int32_t(rng() % 40)});
      tokens[size_t(edit.at)] = edit.tokens[0];
      ASSERT_TRUE(a.apply({edit}).ok());
      ASSERT_TRUE(b.apply({edit}).ok());
      ASSERT_TRUE(oracle.evaluate(tokens).ok());
      ASSERT_EQ(a.output(), oracle.output())
          << "seed " << seed << " edit " << e;
      ASSERT_EQ(b.output(), oracle.output())
          << "seed " << seed << " edit " << e;
      certified[0] += a.stats().certifiedRows;
      certified[1] += b.stats().certifiedRows;
    }
  }
  std::printf("certified rows: %lld with the claimed bounds, %lld with the "
              "elementwise ones\n",
              (long long)certified[0], (long long)certified[1]);
  EXPECT_GT(certified[0], certified[1]);
}

TEST(SpectralBound, ProvesHonestClaimsAndRefusesLowOnes) {
  std::mt19937 rng(7);
  struct Shape {
    int64_t rows, cols;
  };
  for (Shape s : {Shape{1, 1}, Shape{7, 3}, Shape{3, 7}, Shape{64, 64},
                  Shape{100, 37}, Shape{1, 200}})
    for (double scale : {1.0, std::ldexp(1.0, -60), std::ldexp(1.0, 60)}) {
      std::vector<float> w = test::randomFloats(size_t(s.rows * s.cols), rng);
      for (float &x : w)
        x = float(x * scale);
      double sigma = largestSingularValue(w.data(), s.rows, s.cols);
      std::string what = std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                         " scale " + std::to_string(std::log2(scale));
      EXPECT_TRUE(
          spectralNormAtMost(w.data(), s.rows, s.cols, sigma * (1 + 1e-6)))
          << what;
      EXPECT_FALSE(
          spectralNormAtMost(w.data(), s.rows, s.cols, sigma * (1 - 1e-9)))
          << what;
    }
  // A rank-one matrix: ||W||_2 = ||W||_F.
  std::vector<float> ones(12, 0.5f);
  EXPECT_TRUE(spectralNormAtMost(ones.data(), 3, 4, std::sqrt(3.0) * 1.000001));
  EXPECT_FALSE(spectralNormAtMost(ones.data(), 3, 4, std::sqrt(3.0) * 0.9999));
  // Zero: any positive bound holds; 0, negative and NaN bounds prove nothing.
  std::vector<float> zeros(6, 0.0f);
  EXPECT_TRUE(spectralNormAtMost(zeros.data(), 2, 3, 1e-30));
  for (double s : {0.0, -1.0, std::nan(""), double(INFINITY)})
    EXPECT_FALSE(spectralNormAtMost(zeros.data(), 2, 3, s));
  // The largest float32 weights do not overflow the proof.
  std::vector<float> big = {3e38f, -3e38f, 3e38f, 3e38f};
  double sigma = largestSingularValue(big.data(), 2, 2);
  EXPECT_TRUE(spectralNormAtMost(big.data(), 2, 2, sigma * (1 + 1e-6)));
  EXPECT_FALSE(spectralNormAtMost(big.data(), 2, 2, sigma * (1 - 1e-6)));
}

TEST(SpectralBound, CostAtOpt125mGeometry) {
  // One 768 x 768 proof (an OPT-125M attention output projection); the
  // loader runs one per chain with a claim.
  std::mt19937 rng(11);
  std::vector<float> w = test::randomFloats(768 * 768, rng);
  double sigma = largestSingularValue(w.data(), 768, 768);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(spectralNormAtMost(w.data(), 768, 768, sigma * (1 + 1e-6)));
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  std::printf("proving ||W||_2 <= s for a 768 x 768 weight: %.1f ms\n", ms);
}

TEST(SpectralBound, LargeWeightsKeepTheElementwiseBound) {
  // A claim on a side over kMaxVerifiedNormSide is not verified and not
  // used.
  Program p = chainProgram();
  CertificateChain c = p.certificateChains[0];
  Weight &w = p.weights[size_t(p.instrs[size_t(c.linear)].weights[0])];
  LinearNorms norms = linearNorms(p, p.instrs[size_t(c.linear)]);
  ASSERT_TRUE(usesClaimedBound(p, c, norms));
  std::vector<int64_t> shape = w.shape;
  w.shape = {kMaxVerifiedNormSide + 1, 1}; // only the shape is consulted
  EXPECT_FALSE(usesClaimedBound(p, c, norms));
  EXPECT_EQ(chainNormBound(p, c, norms), norms.elementwise);
  w.shape = shape;
}
