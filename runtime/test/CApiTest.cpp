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
