//===- CApi.cpp - incnn runtime C API -------------------------------------===//
//
// Every entry point catches all exceptions: nothing propagates into C.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/incnn.h"

#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Serialize.h"
#include "incnn/runtime/Session.h"
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
  std::unique_ptr<Session> session;
  /// Mutable so that const queries can report their failures too.
  mutable std::string lastError;
};

namespace {

thread_local std::string lastError;

incnn_status_t setError(incnn_status_t code, std::string message) {
  lastError = std::move(message);
  return code;
}

/// The C code of a runtime status.
incnn_status_t codeOf(const Status &st) {
  switch (st.code) {
  case StatusCode::Ok:
    return INCNN_OK;
  case StatusCode::InvalidArgument:
    return INCNN_ERROR_INVALID_ARGUMENT;
  case StatusCode::OutOfRange:
    return INCNN_ERROR_OUT_OF_RANGE;
  case StatusCode::OutOfContract:
    return INCNN_ERROR_OUT_OF_CONTRACT;
  case StatusCode::ResourceExhausted:
    return INCNN_ERROR_RESOURCE_EXHAUSTED;
  case StatusCode::IO:
    return INCNN_ERROR_IO;
  case StatusCode::Interrupted:
  case StatusCode::Internal:
    break;
  }
  return INCNN_ERROR_INTERNAL;
}

incnn_status_t finishLoad(Status st, Program &program, incnn_program_t **out) {
  if (st.is(StatusCode::InvalidArgument))
    return setError(INCNN_ERROR_INVALID_PROGRAM, st.error);
  if (!st.ok())
    return setError(codeOf(st), st.error);
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

/// Runs `body` (returning a Status-like pair) with the session's error
/// bookkeeping: clears the message on success, catches every exception.
template <typename Body>
incnn_status_t guarded(const incnn_session_t *session, Body body) {
  if (!session)
    return INCNN_ERROR_INVALID_ARGUMENT;
  try {
    std::string message;
    incnn_status_t code = body(message);
    session->lastError = code == INCNN_OK ? std::string() : message;
    return code;
  } catch (const std::bad_alloc &) {
    session->lastError = "out of memory";
  } catch (const std::exception &e) {
    session->lastError = e.what();
  }
  return INCNN_ERROR_INTERNAL;
}

template <typename T>
incnn_status_t copyOut(const std::vector<T> &v, T *out, size_t capacity,
                       size_t *out_count, const char *what,
                       std::string &message) {
  if (!out_count || (!out && capacity)) {
    message = "null argument";
    return INCNN_ERROR_INVALID_ARGUMENT;
  }
  *out_count = v.size();
  if (capacity < v.size()) {
    message = std::string(what) + " buffer holds " + std::to_string(capacity) +
              ", need " + std::to_string(v.size());
    return INCNN_ERROR_BUFFER_TOO_SMALL;
  }
  std::copy(v.begin(), v.end(), out);
  return INCNN_OK;
}

/// Copies what `get` reads from the session's document, like copyOut;
/// INCNN_ERROR_UNAVAILABLE before the first reset.
template <typename T, typename Get>
incnn_status_t copyFromDocument(const incnn_session_t *session, T *out,
                                size_t capacity, size_t *out_count,
                                const char *what, Get get) {
  return guarded(session, [&](std::string &message) {
    if (!session->session->hasDocument()) {
      if (out_count)
        *out_count = 0;
      message = "the session has no document: call incnn_session_reset";
      return INCNN_ERROR_UNAVAILABLE;
    }
    return copyOut<T>(get(*session->session), out, capacity, out_count, what,
                      message);
  });
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
  switch (program->program.task) {
  case TaskKind::Classifier:
    return INCNN_TASK_CLASSIFIER;
  case TaskKind::TokenClassifier:
    return INCNN_TASK_TOKEN_CLASSIFIER;
  default:
    return INCNN_TASK_CAUSAL_LM;
  }
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
    if (text_size > kMaxTextBytes)
      return setError(INCNN_ERROR_INVALID_ARGUMENT,
                      "text of " + std::to_string(text_size) +
                          " bytes exceeds the limit of " +
                          std::to_string(kMaxTextBytes));
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
  if (opts.num_threads < 0 || opts.num_threads > kMaxThreads)
    return setError(INCNN_ERROR_INVALID_ARGUMENT, "bad num_threads");
  try {
    auto handle = std::make_unique<incnn_session_t>();
    handle->program = program;
    SessionOptions so;
    so.numThreads = opts.num_threads;
    handle->session = std::make_unique<Session>(program->program, so);
    *out_session = handle.release();
  } catch (const std::exception &e) {
    return setError(INCNN_ERROR_INTERNAL, e.what());
  }
  lastError.clear();
  return INCNN_OK;
}

void incnn_session_destroy(incnn_session_t *session) { delete session; }

incnn_status_t incnn_session_reset(incnn_session_t *session,
                                   const int32_t *tokens, size_t num_tokens) {
  return guarded(session, [&](std::string &message) {
    if (!tokens && num_tokens) {
      message = "tokens is null";
      return INCNN_ERROR_INVALID_ARGUMENT;
    }
    const Program &program = session->program->program;
    if (num_tokens > size_t(program.maxPositions)) {
      message = std::to_string(num_tokens) + " tokens exceed the program's " +
                "context of " + std::to_string(program.maxPositions);
      return INCNN_ERROR_OUT_OF_RANGE;
    }
    Status st = session->session->reset(
        std::vector<int32_t>(tokens, tokens + num_tokens));
    message = st.error; // a refused document keeps the previous one
    return codeOf(st);
  });
}

incnn_status_t incnn_session_apply(incnn_session_t *session,
                                   const incnn_edit_t *edits,
                                   size_t num_edits) {
  return guarded(session, [&](std::string &message) {
    if (!edits && num_edits) {
      message = "edits is null";
      return INCNN_ERROR_INVALID_ARGUMENT;
    }
    if (!session->session->hasDocument()) {
      message = "the session has no document: call incnn_session_reset";
      return INCNN_ERROR_INVALID_ARGUMENT;
    }
    if (num_edits > kMaxEditsPerBatch) {
      message = std::to_string(num_edits) + " edits in one batch exceed the " +
                "limit of " + std::to_string(kMaxEditsPerBatch);
      return INCNN_ERROR_RESOURCE_EXHAUSTED;
    }
    const size_t maxTokens = size_t(session->program->program.maxPositions);
    std::vector<TokenEdit> batch;
    for (size_t i = 0; i < num_edits; ++i) {
      const incnn_edit_t &e = edits[i];
      std::string where = "edit " + std::to_string(i) + ": ";
      bool hasTokens =
          e.kind == INCNN_EDIT_REPLACE || e.kind == INCNN_EDIT_INSERT;
      if (hasTokens && !e.tokens && e.num_tokens) {
        message = where + "tokens is null";
        return INCNN_ERROR_INVALID_ARGUMENT;
      }
      if (hasTokens && e.num_tokens > maxTokens) {
        message = where + std::to_string(e.num_tokens) +
                  " tokens exceed the program's context of " +
                  std::to_string(maxTokens);
        return INCNN_ERROR_OUT_OF_RANGE;
      }
      switch (e.kind) {
      case INCNN_EDIT_REPLACE:
        batch.push_back(TokenEdit::replace(
            e.at, std::vector<int32_t>(e.tokens, e.tokens + e.num_tokens)));
        break;
      case INCNN_EDIT_INSERT:
        batch.push_back(TokenEdit::insert(
            e.at, std::vector<int32_t>(e.tokens, e.tokens + e.num_tokens)));
        break;
      case INCNN_EDIT_DELETE:
        batch.push_back(TokenEdit::erase(e.at, e.count));
        break;
      default:
        message = where + "unknown edit kind " + std::to_string(e.kind);
        return INCNN_ERROR_INVALID_ARGUMENT;
      }
    }
    // Session::apply validates the batch once and refuses it atomically.
    Status st = session->session->apply(batch);
    message = st.error;
    return codeOf(st);
  });
}

incnn_status_t incnn_session_replace(incnn_session_t *session, int64_t at,
                                     const int32_t *tokens, size_t num_tokens) {
  incnn_edit_t e = {INCNN_EDIT_REPLACE, at, tokens, num_tokens, 0};
  return incnn_session_apply(session, &e, 1);
}

incnn_status_t incnn_session_insert(incnn_session_t *session, int64_t at,
                                    const int32_t *tokens, size_t num_tokens) {
  incnn_edit_t e = {INCNN_EDIT_INSERT, at, tokens, num_tokens, 0};
  return incnn_session_apply(session, &e, 1);
}

incnn_status_t incnn_session_delete(incnn_session_t *session, int64_t at,
                                    int64_t count) {
  incnn_edit_t e = {INCNN_EDIT_DELETE, at, nullptr, 0, count};
  return incnn_session_apply(session, &e, 1);
}

incnn_status_t incnn_session_output(const incnn_session_t *session, float *out,
                                    size_t capacity, size_t *out_count) {
  return copyFromDocument(
      session, out, capacity, out_count, "output",
      [](const Session &sess) -> const auto & { return sess.output(); });
}

incnn_status_t incnn_session_changed_rows(const incnn_session_t *session,
                                          int64_t *out, size_t capacity,
                                          size_t *out_count) {
  return copyFromDocument(
      session, out, capacity, out_count, "row",
      [](const Session &sess) -> const auto & {
        return sess.stats().changedOutputRows;
      });
}

incnn_status_t incnn_session_tokens(const incnn_session_t *session,
                                    int32_t *out, size_t capacity,
                                    size_t *out_count) {
  return copyFromDocument(
      session, out, capacity, out_count, "token",
      [](const Session &sess) -> const auto & { return sess.tokens(); });
}

void incnn_stats_init(incnn_stats_t *stats) {
  if (!stats)
    return;
  std::memset(stats, 0, sizeof(*stats));
  stats->struct_size = sizeof(*stats);
}

incnn_status_t incnn_session_stats(const incnn_session_t *session,
                                   incnn_stats_t *out_stats) {
  return guarded(session, [&](std::string &message) {
    if (!out_stats || out_stats->struct_size < sizeof(incnn_stats_t)) {
      message = "stats not initialized with incnn_stats_init";
      return INCNN_ERROR_INVALID_ARGUMENT;
    }
    const EditStats &s = session->session->stats();
    out_stats->macs = s.macs;
    out_stats->macs_full = s.macsFull;
    out_stats->micros = s.micros;
    out_stats->num_tokens = int64_t(session->session->tokens().size());
    out_stats->num_layers = size_t(session->session->numLayers());
    out_stats->num_vq = size_t(session->session->numVQ());
    return INCNN_OK;
  });
}

incnn_status_t incnn_session_layer_stats(const incnn_session_t *session,
                                         int64_t *dirty_rows,
                                         int64_t *updated_rows,
                                         size_t capacity) {
  return guarded(session, [&](std::string &message) {
    const EditStats &s = session->session->stats();
    size_t n = size_t(session->session->numLayers());
    if (capacity < n && (dirty_rows || updated_rows)) {
      message = "layer buffers hold " + std::to_string(capacity) + ", need " +
                std::to_string(n);
      return INCNN_ERROR_BUFFER_TOO_SMALL;
    }
    for (size_t i = 0; i < n; ++i) {
      if (dirty_rows)
        dirty_rows[i] = i < s.dirtyRows.size() ? s.dirtyRows[i] : 0;
      if (updated_rows)
        updated_rows[i] = i < s.updatedRows.size() ? s.updatedRows[i] : 0;
    }
    return INCNN_OK;
  });
}

incnn_status_t incnn_session_code_flips(const incnn_session_t *session,
                                        int64_t *code_flips, size_t capacity) {
  return guarded(session, [&](std::string &message) {
    const EditStats &s = session->session->stats();
    size_t n = size_t(session->session->numVQ());
    if (capacity < n && code_flips) {
      message = "code flip buffer holds " + std::to_string(capacity) +
                ", need " + std::to_string(n);
      return INCNN_ERROR_BUFFER_TOO_SMALL;
    }
    for (size_t i = 0; code_flips && i < n; ++i)
      code_flips[i] = i < s.codeFlips.size() ? s.codeFlips[i] : 0;
    return INCNN_OK;
  });
}

incnn_status_t incnn_session_stats_json(const incnn_session_t *session,
                                        char *out, size_t capacity,
                                        size_t *out_size) {
  return guarded(session, [&](std::string &message) {
    if (!out_size || (!out && capacity)) {
      message = "null argument";
      return INCNN_ERROR_INVALID_ARGUMENT;
    }
    std::string text = dumpJson(statsToJson(session->session->stats()));
    *out_size = text.size();
    if (capacity <= text.size()) {
      message = "stats buffer holds " + std::to_string(capacity) +
                " bytes, need " + std::to_string(text.size() + 1);
      return INCNN_ERROR_BUFFER_TOO_SMALL;
    }
    std::memcpy(out, text.c_str(), text.size() + 1);
    return INCNN_OK;
  });
}

incnn_status_t incnn_session_evaluate(incnn_session_t *session,
                                      const int32_t *tokens, size_t num_tokens,
                                      float *out_logits, size_t capacity) {
  if (!session)
    return INCNN_ERROR_INVALID_ARGUMENT;
  if (!out_logits) {
    session->lastError = "out_logits is null";
    return INCNN_ERROR_INVALID_ARGUMENT;
  }
  size_t outSize = incnn_program_output_size(session->program);
  if (incnn_program_task(session->program) == INCNN_TASK_TOKEN_CLASSIFIER)
    outSize *= num_tokens;
  if (capacity < outSize) {
    session->lastError = "output buffer holds " + std::to_string(capacity) +
                         " floats, need " + std::to_string(outSize);
    return INCNN_ERROR_BUFFER_TOO_SMALL;
  }
  incnn_status_t st = incnn_session_reset(session, tokens, num_tokens);
  if (st != INCNN_OK)
    return st;
  size_t count = 0;
  return incnn_session_output(session, out_logits, capacity, &count);
}

uint64_t incnn_session_macs(const incnn_session_t *session) {
  return session && session->session->hasDocument()
             ? session->session->stats().macs
             : 0;
}

const char *incnn_session_last_error(const incnn_session_t *session) {
  return session ? session->lastError.c_str() : "";
}

} // extern "C"
