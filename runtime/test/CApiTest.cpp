//===- CApiTest.cpp - The C API -------------------------------------------===//

#include "ProgramBuilder.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/incnn.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace incnn::runtime;

namespace {

std::string programBytes(const Program &p) {
  std::string path = ::testing::TempDir() + "incnn_capi_" +
                     std::to_string(::getpid()) + ".incnn";
  EXPECT_TRUE(writeProgram(p, path).ok());
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::remove(path.c_str());
  return ss.str();
}

TEST(CApi, EvaluateClassifier) {
  DecoderConfig c;
  c.task = TaskKind::Classifier;
  Program p = buildDecoder(c);
  std::string bytes = programBytes(p);

  EXPECT_STREQ(incnn_version(), "0.1.0");
  incnn_program_t *prog = nullptr;
  ASSERT_EQ(incnn_program_load_from_memory(bytes.data(), bytes.size(), &prog),
            INCNN_OK)
      << incnn_last_error();
  EXPECT_EQ(incnn_program_task(prog), INCNN_TASK_CLASSIFIER);
  EXPECT_EQ(incnn_program_output_size(prog), 3u);
  EXPECT_EQ(incnn_program_num_labels(prog), 3u);
  EXPECT_STREQ(incnn_program_label(prog, 1), "label1");
  EXPECT_EQ(incnn_program_label(prog, 3), nullptr);
  EXPECT_EQ(incnn_program_has_tokenizer(prog), 0);
  size_t count = 0;
  int32_t ids[4];
  EXPECT_EQ(incnn_program_tokenize(prog, "hi", 2, ids, 4, &count),
            INCNN_ERROR_UNAVAILABLE);

  incnn_options_t opts;
  incnn_options_init(&opts);
  opts.num_threads = 2;
  incnn_session_t *session = nullptr;
  ASSERT_EQ(incnn_session_create(prog, &opts, &session), INCNN_OK);
  int32_t toks[] = {4, 8, 15, 16, 23, 42};
  float out[3];
  ASSERT_EQ(incnn_session_evaluate(session, toks, 6, out, 3), INCNN_OK)
      << incnn_session_last_error(session);
  Evaluator ev(p);
  ASSERT_TRUE(ev.evaluate({4, 8, 15, 16, 23, 42}).ok());
  EXPECT_EQ(std::vector<float>(out, out + 3), ev.output());
  EXPECT_EQ(incnn_session_macs(session), ev.macs());

  EXPECT_EQ(incnn_session_evaluate(session, toks, 6, out, 2),
            INCNN_ERROR_BUFFER_TOO_SMALL);
  int32_t bad[] = {1, 1000};
  EXPECT_EQ(incnn_session_evaluate(session, bad, 2, out, 3),
            INCNN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(incnn_session_last_error(session)).find("vocabulary"),
            std::string::npos);
  EXPECT_EQ(incnn_session_evaluate(session, toks, 0, out, 3),
            INCNN_ERROR_INVALID_ARGUMENT);
  incnn_session_destroy(session);
  incnn_program_destroy(prog);
}

TEST(CApi, SessionEdits) {
  DecoderConfig c;
  c.vq = {{0, false, 2, 8}};
  Program p = buildDecoder(c);
  std::string bytes = programBytes(p);
  incnn_program_t *prog = nullptr;
  ASSERT_EQ(incnn_program_load_from_memory(bytes.data(), bytes.size(), &prog),
            INCNN_OK)
      << incnn_last_error();
  incnn_session_t *session = nullptr;
  ASSERT_EQ(incnn_session_create(prog, nullptr, &session), INCNN_OK);
  size_t count = 7;
  float out[64];
  EXPECT_EQ(incnn_session_output(session, out, 64, &count),
            INCNN_ERROR_UNAVAILABLE);
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(incnn_session_delete(session, 0, 1), INCNN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(incnn_session_last_error(session)).find("reset"),
            std::string::npos);

  int32_t toks[] = {4, 8, 15, 16, 23, 42};
  ASSERT_EQ(incnn_session_reset(session, toks, 6), INCNN_OK);
  EXPECT_STREQ(incnn_session_last_error(session), "");
  std::vector<int32_t> expect(toks, toks + 6);

  // Every step equals a from-scratch evaluation of the same tokens.
  auto check = [&](const char *what) {
    SCOPED_TRACE(what);
    size_t n = 0;
    int32_t got[64];
    ASSERT_EQ(incnn_session_tokens(session, got, 64, &n), INCNN_OK);
    EXPECT_EQ(std::vector<int32_t>(got, got + n), expect);
    ASSERT_EQ(incnn_session_output(session, out, 64, &n), INCNN_OK);
    ASSERT_EQ(n, size_t(c.vocab));
    Evaluator ev(p);
    ASSERT_TRUE(ev.evaluate(expect).ok());
    EXPECT_EQ(std::vector<float>(out, out + n), ev.output());
    incnn_stats_t stats;
    incnn_stats_init(&stats);
    ASSERT_EQ(incnn_session_stats(session, &stats), INCNN_OK);
    EXPECT_EQ(stats.macs_full, countMacs(p, int64_t(expect.size())));
    EXPECT_EQ(stats.macs, incnn_session_macs(session));
    EXPECT_EQ(stats.num_tokens, int64_t(expect.size()));
    EXPECT_EQ(stats.num_layers, 2u);
    EXPECT_EQ(stats.num_vq, 1u);
    int64_t dirty[2], updated[2], flips[1];
    EXPECT_EQ(incnn_session_layer_stats(session, dirty, updated, 2), INCNN_OK);
    EXPECT_EQ(incnn_session_layer_stats(session, dirty, nullptr, 1),
              INCNN_ERROR_BUFFER_TOO_SMALL);
    EXPECT_EQ(incnn_session_code_flips(session, flips, 1), INCNN_OK);
    for (int64_t x : {dirty[0], dirty[1], updated[0], updated[1], flips[0]})
      EXPECT_LE(x, int64_t(expect.size()));
  };
  check("reset");

  int32_t r[] = {7};
  ASSERT_EQ(incnn_session_replace(session, 2, r, 1), INCNN_OK);
  expect[2] = 7;
  check("replace");
  int32_t ins[] = {1, 2};
  ASSERT_EQ(incnn_session_insert(session, 0, ins, 2), INCNN_OK);
  expect.insert(expect.begin(), {1, 2});
  check("insert");
  ASSERT_EQ(incnn_session_delete(session, 3, 2), INCNN_OK);
  expect.erase(expect.begin() + 3, expect.begin() + 5);
  check("delete");
  incnn_edit_t batch[] = {{INCNN_EDIT_DELETE, 0, nullptr, 0, 1},
                          {INCNN_EDIT_INSERT, 5, r, 1, 0},
                          {INCNN_EDIT_REPLACE, 0, ins, 2, 0}};
  ASSERT_EQ(incnn_session_apply(session, batch, 3), INCNN_OK);
  expect.erase(expect.begin());
  expect.insert(expect.begin() + 5, 7);
  expect[0] = 1;
  expect[1] = 2;
  check("batch");

  // Rejected edits leave the session as it was.
  int32_t bad[] = {1000};
  EXPECT_EQ(incnn_session_insert(session, 0, bad, 1),
            INCNN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(incnn_session_last_error(session)).find("vocabulary"),
            std::string::npos);
  EXPECT_EQ(incnn_session_delete(session, 0, 100), INCNN_ERROR_OUT_OF_RANGE);
  EXPECT_EQ(incnn_session_replace(session, 0, nullptr, 1),
            INCNN_ERROR_INVALID_ARGUMENT);
  incnn_edit_t half[] = {{INCNN_EDIT_DELETE, 0, nullptr, 0, 1},
                         {INCNN_EDIT_DELETE, 50, nullptr, 0, 1}};
  EXPECT_EQ(incnn_session_apply(session, half, 2), INCNN_ERROR_OUT_OF_RANGE);
  // Out-of-range kinds are read as integers, never loaded as the enum.
  for (int32_t kind : {9, -1, 3, INT32_MAX}) {
    incnn_edit_t unknown = {kind, 0, nullptr, 0, 1};
    EXPECT_EQ(incnn_session_apply(session, &unknown, 1),
              INCNN_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(incnn_session_last_error(session))
                  .find("unknown edit kind " + std::to_string(kind)),
              std::string::npos);
  }
  // Sizes past the limits are refused before anything is copied (the
  // pointer would not even be readable that far).
  EXPECT_EQ(incnn_session_insert(session, 0, toks, size_t(1) << 40),
            INCNN_ERROR_OUT_OF_RANGE);
  EXPECT_NE(std::string(incnn_session_last_error(session)).find("context"),
            std::string::npos);
  EXPECT_EQ(incnn_session_apply(session, half, size_t(1) << 40),
            INCNN_ERROR_RESOURCE_EXHAUSTED);
  EXPECT_EQ(incnn_session_reset(session, toks, size_t(1) << 40),
            INCNN_ERROR_OUT_OF_RANGE);
  check("after rejected edits");
  EXPECT_EQ(incnn_session_output(session, out, 3, &count),
            INCNN_ERROR_BUFFER_TOO_SMALL);
  EXPECT_EQ(count, size_t(c.vocab));
  EXPECT_EQ(incnn_session_reset(session, toks, 0),
            INCNN_ERROR_INVALID_ARGUMENT);
  check("after rejected reset");
  EXPECT_EQ(incnn_session_reset(nullptr, toks, 1),
            INCNN_ERROR_INVALID_ARGUMENT);
  incnn_session_destroy(session);
  incnn_program_destroy(prog);
}

TEST(CApi, LoadErrors) {
  incnn_program_t *prog = reinterpret_cast<incnn_program_t *>(1);
  EXPECT_EQ(incnn_program_load("/nonexistent.incnn", &prog), INCNN_ERROR_IO);
  EXPECT_EQ(prog, nullptr);
  EXPECT_NE(std::string(incnn_last_error()).find("cannot open"),
            std::string::npos);
  const char junk[] = "INCNNPRGjunkjunkjunkjunkjunk";
  EXPECT_EQ(incnn_program_load_from_memory(junk, sizeof(junk), &prog),
            INCNN_ERROR_INVALID_PROGRAM);
  EXPECT_EQ(incnn_program_load(nullptr, &prog), INCNN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(incnn_program_load("x", nullptr), INCNN_ERROR_INVALID_ARGUMENT);
  incnn_session_t *s = nullptr;
  EXPECT_EQ(incnn_session_create(nullptr, nullptr, &s),
            INCNN_ERROR_INVALID_ARGUMENT);
  incnn_program_destroy(nullptr);
  incnn_session_destroy(nullptr);
}

} // namespace
