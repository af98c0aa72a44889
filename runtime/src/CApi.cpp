//===- CApi.cpp - incnn runtime C API -------------------------------------===//
//
// Every entry point catches all exceptions: nothing propagates into C.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/incnn.h"

#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Tokenizer.h"

#include <cstring>
#include <mutex>

using namespace incnn::runtime;

struct incnn_program_t {
  Program program;
  std::unique_ptr<Tokenizer> tokenizer; // null when absent
};

struct incnn_session_t {
  const incnn_program_t *program;
  std::unique_ptr<Evaluator> evaluator;
  std::string lastError;
};

namespace {

thread_local std::string lastError;

incnn_status_t setError(incnn_status_t code, std::string message) {
  lastError = std::move(message);
  return code;
}

incnn_status_t finishLoad(Status st, Program &program, incnn_program_t **out) {
  if (!st.ok())
    return setError(st.error.find("cannot open") != std::string::npos ||
                            st.error.find("not a regular file") !=
                                std::string::npos
                        ? INCNN_ERROR_IO
                        : INCNN_ERROR_INVALID_PROGRAM,
                    st.error);
  auto handle = std::make_unique<incnn_program_t>();
  handle->program = std::move(program);
  if (!handle->program.tokenizer.empty()) {
    Status ts = Tokenizer::create(handle->program.tokenizer, handle->tokenizer);
    if (!ts.ok())
      return setError(INCNN_ERROR_INVALID_PROGRAM, ts.error);
  }
  *out = handle.release();
  lastError.clear();
  return INCNN_OK;
}

} // namespace

extern "C" {

const char *incnn_version(void) { return "0.1.0"; }

void incnn_options_init(incnn_options_t *options) {
  if (!options)
    return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->num_threads = 0;
}

const char *incnn_last_error(void) { return lastError.c_str(); }

incnn_status_t incnn_program_load(const char *path,
                                  incnn_program_t **out_program) {
  if (!out_program)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "out_program is null");
  *out_program = nullptr;
  if (!path)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "path is null");
  try {
    Program program;
    Status st = loadProgram(path, program);
    return finishLoad(st, program, out_program);
  } catch (const std::exception &e) {
    return setError(INCNN_ERROR_INTERNAL, e.what());
  }
}

incnn_status_t incnn_program_load_from_memory(const void *data, size_t size,
                                              incnn_program_t **out_program) {
  if (!out_program)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "out_program is null");
  *out_program = nullptr;
  if (!data && size)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "data is null");
  try {
    Program program;
    Status st = loadProgramFromBuffer(data, size, program);
    return finishLoad(st, program, out_program);
  } catch (const std::exception &e) {
    return setError(INCNN_ERROR_INTERNAL, e.what());
  }
}

void incnn_program_destroy(incnn_program_t *program) { delete program; }

incnn_task_t incnn_program_task(const incnn_program_t *program) {
  return program->program.task == TaskKind::Classifier ? INCNN_TASK_CLASSIFIER
                                                       : INCNN_TASK_CAUSAL_LM;
}

int32_t incnn_program_vocab_size(const incnn_program_t *program) {
  return program->program.vocabSize;
}

int32_t incnn_program_max_tokens(const incnn_program_t *program) {
  return program->program.maxPositions;
}

size_t incnn_program_output_size(const incnn_program_t *program) {
  const Program &p = program->program;
  return size_t(p.values[p.outputValue].width);
}

size_t incnn_program_num_labels(const incnn_program_t *program) {
  return program->program.labels.size();
}

const char *incnn_program_label(const incnn_program_t *program, size_t index) {
  if (index >= program->program.labels.size())
    return nullptr;
  return program->program.labels[index].c_str();
}

int incnn_program_has_tokenizer(const incnn_program_t *program) {
  return program->tokenizer ? 1 : 0;
}

incnn_status_t incnn_program_tokenize(const incnn_program_t *program,
                                      const char *text, size_t text_size,
                                      int32_t *out_tokens, size_t capacity,
                                      size_t *out_count) {
  if (!program || (!text && text_size) || !out_count ||
      (!out_tokens && capacity))
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "null argument");
  *out_count = 0;
  if (!program->tokenizer)
    return setError(INCNN_ERROR_UNAVAILABLE, "the program has no tokenizer");
  try {
    std::vector<int32_t> ids;
    Status st = program->tokenizer->encode(
        std::string_view(text ? text : "", text_size), ids);
    if (!st.ok())
      return setError(INCNN_ERROR_INVALID_ARGUMENT, st.error);
    *out_count = ids.size();
    if (ids.size() > capacity)
      return setError(INCNN_ERROR_BUFFER_TOO_SMALL,
                      "token buffer holds " + std::to_string(capacity) +
                          ", need " + std::to_string(ids.size()));
    std::copy(ids.begin(), ids.end(), out_tokens);
  } catch (const std::exception &e) {
    return setError(INCNN_ERROR_INTERNAL, e.what());
  }
  return INCNN_OK;
}

incnn_status_t incnn_session_create(const incnn_program_t *program,
                                    const incnn_options_t *options,
                                    incnn_session_t **out_session) {
  if (!out_session)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "out_session is null");
  *out_session = nullptr;
  if (!program)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "program is null");
  incnn_options_t opts;
  incnn_options_init(&opts);
  if (options) {
    if (options->struct_size <
        offsetof(incnn_options_t, num_threads) + sizeof(int32_t))
      return setError(INCNN_ERROR_INVALID_ARGUMENT,
                      "options not initialized with incnn_options_init");
    opts.num_threads = options->num_threads;
  }
  if (opts.num_threads < 0 || opts.num_threads > 1024)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "bad num_threads");
  try {
    auto session = std::make_unique<incnn_session_t>();
    session->program = program;
    EvaluatorOptions eo;
    eo.numThreads = opts.num_threads;
    session->evaluator = std::make_unique<Evaluator>(program->program, eo);
    *out_session = session.release();
  } catch (const std::exception &e) {
    return setError(INCNN_ERROR_INTERNAL, e.what());
  }
  lastError.clear();
  return INCNN_OK;
}

void incnn_session_destroy(incnn_session_t *session) { delete session; }

incnn_status_t incnn_session_evaluate(incnn_session_t *session,
                                      const int32_t *tokens, size_t num_tokens,
                                      float *out_logits, size_t capacity) {
  if (!session)
    return INCNN_ERROR_INVALID_ARGUMENT;
  auto fail = [&](incnn_status_t code, std::string msg) {
    session->lastError = std::move(msg);
    return code;
  };
  if ((!tokens && num_tokens) || !out_logits)
    return fail(INCNN_ERROR_INVALID_ARGUMENT, "null argument");
  try {
    size_t outSize = incnn_program_output_size(session->program);
    if (capacity < outSize)
      return fail(INCNN_ERROR_BUFFER_TOO_SMALL,
                  "output buffer holds " + std::to_string(capacity) +
                      " floats, need " + std::to_string(outSize));
    std::vector<int32_t> toks(tokens, tokens + num_tokens);
    Status valid = validateTokens(session->program->program, toks);
    if (!valid.ok())
      return fail(INCNN_ERROR_INVALID_ARGUMENT, valid.error);
    Status st = session->evaluator->evaluate(toks);
    if (!st.ok())
      return fail(INCNN_ERROR_INTERNAL, st.error);
    const std::vector<float> &out = session->evaluator->output();
    std::copy(out.begin(), out.end(), out_logits);
  } catch (const std::exception &e) {
    return fail(INCNN_ERROR_INTERNAL, e.what());
  }
  session->lastError.clear();
  return INCNN_OK;
}

uint64_t incnn_session_macs(const incnn_session_t *session) {
  return session ? session->evaluator->macs() : 0;
}

const char *incnn_session_last_error(const incnn_session_t *session) {
  return session ? session->lastError.c_str() : "";
}

} // extern "C"
