//===- SerializeTest.cpp - incnn's JSON and the from-scratch check --------===//

#include "incnn/runtime/Serialize.h"
#include "ProgramBuilder.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/incnn.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <unistd.h>

using namespace incnn::runtime;
using json = nlohmann::json;

namespace {

uint32_t bitsOf(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

float floatOf(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

/// Significant decimal digits of a JSON number's text.
size_t significantDigits(const std::string &text) {
  std::string digits;
  for (char c : text.substr(0, text.find_first_of("eE")))
    if (c >= '0' && c <= '9')
      digits += c;
  size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos)
    return 1;
  size_t last = digits.find_last_not_of('0');
  return last - first + 1;
}

/// The text parses back, as a JSON reader does (to a double, then rounded
/// to float32), to exactly `x`; it is a JSON float of at most 9 significant
/// digits.
void expectRoundTrip(float x) {
  std::string text = formatFloat(x);
  SCOPED_TRACE(text);
  json parsed = json::parse(text);
  ASSERT_TRUE(parsed.is_number_float());
  EXPECT_EQ(bitsOf(float(parsed.get<double>())), bitsOf(x));
  EXPECT_EQ(bitsOf(float(std::strtod(text.c_str(), nullptr))), bitsOf(x));
  EXPECT_LE(significantDigits(text), 9u);
  // The same through a JSON value and dumpJson.
  EXPECT_EQ(dumpJson(jsonFloat(x)), text);
}

TEST(Serialize, FloatShortestForms) {
  EXPECT_EQ(formatFloat(0.1f), "0.1");
  EXPECT_EQ(formatFloat(1.0f), "1.0");
  EXPECT_EQ(formatFloat(-3.0f), "-3.0");
  EXPECT_EQ(formatFloat(0.0f), "0.0");
  EXPECT_EQ(formatFloat(-0.0f), "-0.0");
  EXPECT_EQ(formatFloat(1e-5f), "1e-05");
  EXPECT_EQ(formatFloat(FLT_MAX), "3.4028235e+38");
  EXPECT_EQ(formatFloat(std::numeric_limits<float>::denorm_min()), "1e-45");
  EXPECT_EQ(formatFloat(16777216.0f), "16777216.0");
  EXPECT_EQ(formatFloat(floatOf(0x15ae43fd)), "7.0385307e-26");
  // A large integer: to_chars' fixed form has its exact digits (33554448),
  // the scientific one fewer.
  EXPECT_EQ(formatFloat(floatOf(0x4c000004)), "3.355445e+07");
  EXPECT_EQ(formatFloat(-2015707136000.0f), "-2.0157071e+12");
  // 0.1f as a double has 17 digits (0.10000000149011612): the value is
  // exact, its text the float32's.
  EXPECT_EQ(jsonFloat(0.1f).get<double>(), double(0.1f));
}

TEST(Serialize, FloatRoundTrips) {
  for (float x : {0.0f, -0.0f, 1.0f, -1.0f, 0.1f, 1.0f / 3, FLT_MIN, -FLT_MIN,
                  FLT_MAX, -FLT_MAX, FLT_EPSILON, 16777217.0f, 123456792.0f,
                  std::numeric_limits<float>::denorm_min(),
                  -std::numeric_limits<float>::denorm_min(),
                  floatOf(0x007fffff), // largest denormal
                  floatOf(0x00000003), floatOf(0x00400000),
                  // Values whose shortest float32 digits, read as a double,
                  // nlohmann prints with 17 digits (Grisu2 is not always
                  // shortest): dumpJson must not.
                  floatOf(0x000470d5), floatOf(0x3a8bdd3c), floatOf(0x3a8c0bca),
                  floatOf(0x00912b33),
                  // The float32 whose shortest digits (7.038531e-26) a double
                  // reader rounds to a neighbour; and its negative.
                  floatOf(0x15ae43fd), floatOf(0x95ae43fd), floatOf(0x4c000004),
                  -2015707136000.0f})
    expectRoundTrip(x);
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    float x = floatOf(uint32_t(rng()));
    if (std::isfinite(x))
      expectRoundTrip(x);
  }
  // Typical logits and activations, densely.
  std::uniform_real_distribution<float> logit(-50.0f, 50.0f);
  for (int i = 0; i < 200000; ++i)
    expectRoundTrip(logit(rng));
}

TEST(Serialize, NonFiniteIsNull) {
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(jsonFloat(nan).is_null());
  EXPECT_TRUE(jsonFloat(inf).is_null());
  EXPECT_TRUE(jsonFloat(-inf).is_null());
  EXPECT_EQ(formatFloat(nan), "null");
  EXPECT_EQ(formatFloat(-inf), "null");
  EXPECT_EQ(dumpJson(floatsToJson({1.5f, nan, inf, -inf, -0.0f})),
            "[1.5,null,null,null,-0.0]");
  EXPECT_EQ(dumpJson(floatsToJson({})), "[]");
}

TEST(Serialize, DumpJson) {
  // Doubles that are not float32 values keep their own shortest form.
  EXPECT_EQ(dumpJson(json(0.1)), "0.1");
  EXPECT_EQ(dumpJson(json(1.0 / 3)), "0.3333333333333333");
  EXPECT_EQ(dumpJson(json(1e300)), "1e+300");
  EXPECT_EQ(dumpJson(json(2.5)), "2.5");
  EXPECT_EQ(dumpJson(json(uint64_t(18446744073709551615u))),
            "18446744073709551615");
  EXPECT_EQ(dumpJson(json(int64_t(-7))), "-7");
  // Key order: sorted for json, insertion order for ordered_json; strings
  // escaped, invalid UTF-8 replaced.
  json j = {{"b", true}, {"a", nullptr}, {"s", "q\"\n\xff"}};
  EXPECT_EQ(dumpJson(j),
            "{\"a\":null,\"b\":true,\"s\":\"q\\\"\\n\xef\xbf\xbd\"}");
  nlohmann::ordered_json o;
  o["z"] = json::array({1, 2.0f, "x"});
  o["a"] = json::object();
  EXPECT_EQ(dumpJson(o), "{\"z\":[1,2.0,\"x\"],\"a\":{}}");
  // What dumpJson prints, nlohmann parses back to the same tree.
  json tree = {{"output", floatsToJson({0.25f, -1e-30f, 3.0e30f})},
               {"n", 3},
               {"nested", {{"x", {1, 2, {{"y", 0.7f}}}}}}};
  json back = json::parse(dumpJson(tree));
  ASSERT_EQ(back["output"].size(), 3u);
  EXPECT_EQ(float(back["output"][1].get<double>()), -1e-30f);
  EXPECT_EQ(float(back["nested"]["x"][2]["y"].get<double>()), 0.7f);
  EXPECT_EQ(back["n"], 3);
}

TEST(Serialize, StatsHaveEveryKey) {
  EditStats s;
  s.macs = 10;
  s.macsFull = 1000;
  s.numTokens = 7;
  s.dirtyRows = {1, 2};
  s.updatedRows = {3, 4};
  s.codeFlips = {5};
  s.certifiedRows = 6;
  s.recomputedRows = {0, 3, 4};
  s.stateBytes = 4096;
  s.micros = 12.345;
  s.stepMicros = {1.04, 11.26};
  s.attentionMicros = {{0.5, 9.96, 0.0}};
  nlohmann::ordered_json j = statsToJson(s);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it)
    keys.push_back(it.key());
  EXPECT_EQ(keys, std::vector<std::string>(std::begin(kStatsKeys),
                                           std::end(kStatsKeys)));
  EXPECT_EQ(dumpJson(j), "{\"macs\":10,\"macs_full\":1000,\"tokens\":7,"
                         "\"dirty_rows\":[1,2],\"updated_rows\":[3,4],"
                         "\"code_flips\":[5],\"certified_rows\":6,"
                         "\"deferred_rows\":0,\"recomputed_rows\":3,"
                         "\"state_bytes\":4096,\"us\":12.3,"
                         "\"step_us\":[1.0,11.3],\"attention_us\":[{"
                         "\"plan\":0.5,\"delta_terms\":10.0,"
                         "\"full_rows\":0.0}]}");
  // Empty statistics (before any evaluation) have the same keys.
  nlohmann::ordered_json empty = statsToJson(EditStats{});
  EXPECT_EQ(empty.size(), std::size(kStatsKeys));
  EXPECT_TRUE(empty["dirty_rows"].is_array() && empty["dirty_rows"].empty());
  EXPECT_EQ(dumpJson(empty["us"]), "0.0");
}

TEST(Serialize, SessionStatsEverywhere) {
  DecoderConfig c;
  c.vq = {{0, false, 2, 8}};
  Program p = buildDecoder(c);
  ASSERT_TRUE(verifyProgram(p).ok());
  Session session(p, {1});
  ASSERT_TRUE(session.reset({4, 8, 15, 16, 23, 42}).ok());
  ASSERT_TRUE(session.apply({TokenEdit::replace(2, {7})}).ok());
  nlohmann::ordered_json j = statsToJson(session.stats());
  EXPECT_EQ(j["tokens"], 6);
  EXPECT_EQ(j["dirty_rows"].size(), size_t(session.numLayers()));
  EXPECT_EQ(j["updated_rows"].size(), size_t(session.numLayers()));
  EXPECT_EQ(j["code_flips"].size(), size_t(session.numVQ()));
  EXPECT_EQ(j["macs_full"], countMacs(p, 6));
  // Every step timed, each layer's parts within its step, all within the
  // update.
  const EditStats &s = session.stats();
  ASSERT_EQ(s.stepMicros.size(), p.steps.size());
  ASSERT_EQ(s.attentionMicros.size(), size_t(session.numLayers()));
  EXPECT_EQ(j["step_us"].size(), p.steps.size());
  EXPECT_EQ(j["attention_us"].size(), size_t(session.numLayers()));
  double steps = 0;
  size_t layer = 0;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    EXPECT_GE(s.stepMicros[i], 0.0);
    steps += s.stepMicros[i];
    if (p.steps[i].kind != StepKind::AttentionUpdate)
      continue;
    const AttentionMicros &t = s.attentionMicros[layer++];
    EXPECT_GT(t.plan, 0.0);
    EXPECT_LE(t.plan + t.deltaTerms + t.fullRows, s.stepMicros[i]);
  }
  EXPECT_LE(steps, s.micros);
  // From scratch: every step, no attention parts.
  ASSERT_TRUE(session.reset({4, 8, 15}).ok());
  EXPECT_EQ(session.stats().stepMicros.size(), p.steps.size());
  EXPECT_TRUE(session.stats().attentionMicros.empty());
}

TEST(Serialize, CApiStatsJson) {
  DecoderConfig c;
  c.vq = {{0, false, 2, 8}};
  Program p = buildDecoder(c);
  std::string path = ::testing::TempDir() + "incnn_serialize_" +
                     std::to_string(::getpid()) + ".incnn";
  ASSERT_TRUE(writeProgram(p, path).ok());
  incnn_program_t *prog = nullptr;
  ASSERT_EQ(incnn_program_load(path.c_str(), &prog), INCNN_OK)
      << incnn_last_error();
  std::remove(path.c_str());
  incnn_session_t *session = nullptr;
  ASSERT_EQ(incnn_session_create(prog, nullptr, &session), INCNN_OK);
  int32_t toks[] = {4, 8, 15, 16, 23, 42};
  ASSERT_EQ(incnn_session_reset(session, toks, 6), INCNN_OK);
  size_t size = 0;
  EXPECT_EQ(incnn_session_stats_json(session, nullptr, 0, &size),
            INCNN_ERROR_BUFFER_TOO_SMALL);
  ASSERT_GT(size, 0u);
  std::string text(size + 1, '\0');
  EXPECT_EQ(incnn_session_stats_json(session, text.data(), size, &size),
            INCNN_ERROR_BUFFER_TOO_SMALL);
  ASSERT_EQ(incnn_session_stats_json(session, text.data(), text.size(), &size),
            INCNN_OK)
      << incnn_session_last_error(session);
  EXPECT_EQ(text.back(), '\0');
  text.pop_back();
  EXPECT_EQ(text.size(), size);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);
  size_t k = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++k)
    EXPECT_EQ(it.key(), kStatsKeys[k]);
  EXPECT_EQ(k, std::size(kStatsKeys));
  EXPECT_EQ(j["tokens"], 6);
  EXPECT_EQ(incnn_session_stats_json(session, text.data(), 4, nullptr),
            INCNN_ERROR_INVALID_ARGUMENT);
  incnn_session_destroy(session);
  incnn_program_destroy(prog);
}

TEST(FromScratch, MatchesAfterEdits) {
  DecoderConfig c;
  c.vq = {{0, false, 2, 8}};
  Program p = buildDecoder(c);
  ASSERT_TRUE(verifyProgram(p).ok());
  Session session(p, {1});
  Evaluator oracle(p, {1});
  // A session with no document: the from-scratch run says why it failed.
  Status empty = compareWithFromScratch(session, oracle);
  EXPECT_FALSE(empty.ok());
  EXPECT_NE(empty.error.find("from-scratch run failed"), std::string::npos)
      << empty.error;
  ASSERT_TRUE(session.reset({4, 8, 15, 16, 23, 42}).ok());
  for (const TokenEdit &e :
       {TokenEdit::replace(2, {7}), TokenEdit::insert(0, {1, 2}),
        TokenEdit::erase(3, 2)}) {
    ASSERT_TRUE(session.apply({e}).ok());
    Status st = compareWithFromScratch(session, oracle);
    EXPECT_TRUE(st.ok()) << st.error;
    st = compareWithFromScratch(session, 1);
    EXPECT_TRUE(st.ok()) << st.error;
  }
}

TEST(FromScratch, NamesTheFirstDifference) {
  // Two programs of one shape with different weights: the outputs differ,
  // and the message names an element with both values.
  DecoderConfig c;
  Program a = buildDecoder(c);
  c.seed = 2;
  Program b = buildDecoder(c);
  ASSERT_TRUE(verifyProgram(a).ok());
  ASSERT_TRUE(verifyProgram(b).ok());
  Session session(a, {1});
  ASSERT_TRUE(session.reset({4, 8, 15}).ok());
  Evaluator other(b, {1});
  Status st = compareWithFromScratch(session, other);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error.rfind("output[0] is ", 0), 0u) << st.error;
  EXPECT_NE(st.error.find(" incrementally but "), std::string::npos);
  EXPECT_NE(st.error.find(" from scratch"), std::string::npos);
}

} // namespace
