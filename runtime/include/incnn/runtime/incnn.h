/*===- incnn.h - incnn runtime C API ------------------------------*- C -*-===*\
|*                                                                            *|
|* A small C API over the runtime: load a program, open a session on a        *|
|* document, apply edits incrementally, read the output. Handles are opaque;  *|
|* every call that can fail returns an incnn_status_t and leaves a message    *|
|* readable from the handle (or, for calls that create a handle, from         *|
|* incnn_last_error() on the same thread).                                    *|
|*                                                                            *|
|* Ownership: *_create / *_load return handles the caller frees with the      *|
|* matching *_destroy; pointers passed in are borrowed for the call only.     *|
|*                                                                            *|
|* Threading: a program is immutable after loading and may be shared by any   *|
|* number of threads and sessions. A session must be used by one thread at a  *|
|* time (including its queries); it runs its kernels on its own threads.      *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/
#ifndef INCNN_RUNTIME_INCNN_H
#define INCNN_RUNTIME_INCNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
typedef enum incnn_status_t {
  INCNN_OK = 0,
  INCNN_ERROR_INVALID_ARGUMENT = 1, /* null pointer, bad size, bad token */
  INCNN_ERROR_IO = 2,               /* file cannot be opened or read */
  INCNN_ERROR_INVALID_PROGRAM = 3,  /* malformed or unsupported program */
  INCNN_ERROR_BUFFER_TOO_SMALL = 4, /* caller buffer shorter than needed */
  INCNN_ERROR_UNAVAILABLE = 5,      /* e.g. program has no tokenizer */
  INCNN_ERROR_INTERNAL = 6,         /* a bug: please report it */
  /* The input is well formed but its activations leave the exactness
   * contract (docs/exactness.md: non-finite, or past the attention bounds).
   * The session is exactly as it was before the call. */
  INCNN_ERROR_OUT_OF_CONTRACT = 7,
  /* Well formed but past a bound: an edit position outside the sequence, a
   * sequence longer than the program's context. The session is unchanged. */
  INCNN_ERROR_OUT_OF_RANGE = 8,
  /* A size limit was exceeded or memory ran out. After a failed update the
   * session has no document (call incnn_session_reset). */
  INCNN_ERROR_RESOURCE_EXHAUSTED = 9,
} incnn_status_t;

/* The task of a program's output. */
typedef enum incnn_task_t {
  INCNN_TASK_CAUSAL_LM = 0,  /* output: next-token logits [vocab] */
  INCNN_TASK_CLASSIFIER = 1, /* output: class logits [num labels] */
  /* output: one row of label logits per token [tokens x num labels],
   * row-major; incnn_session_changed_rows says which rows an edit changed */
  INCNN_TASK_TOKEN_CLASSIFIER = 2,
} incnn_task_t;

/* A loaded, verified program. Immutable; thread-safe. */
typedef struct incnn_program_t incnn_program_t;
/* Evaluation state for one token sequence. One thread at a time. */
typedef struct incnn_session_t incnn_session_t;

/* Session options. Always call incnn_options_init before setting fields, so
 * that fields added by later versions get their defaults. */
typedef struct incnn_options_t {
  size_t struct_size;  /* set by incnn_options_init */
  int32_t num_threads; /* kernel threads incl. the caller; 0 = all cores */
} incnn_options_t;

/* Runtime version string ("0.1.0"); static storage, never freed. */
const char *incnn_version(void);

/* Fills `options` with defaults. `options` must not be null. */
void incnn_options_init(incnn_options_t *options);

/* Message of the last failed handle-creating call (program load, session
 * create) on the calling thread; "" if none. Valid until the next such call
 * on this thread. */
const char *incnn_last_error(void);

/* Loads and verifies the program file at `path` (memory-mapped).
 * On success *out_program owns the program; free it with
 * incnn_program_destroy. On failure *out_program is set to NULL. */
incnn_status_t incnn_program_load(const char *path,
                                  incnn_program_t **out_program);

/* Same, from `size` bytes at `data` (copied; the caller keeps `data`). */
incnn_status_t incnn_program_load_from_memory(const void *data, size_t size,
                                              incnn_program_t **out_program);

/* Frees a program. Every session created from it must be destroyed first.
 * NULL is ignored. */
void incnn_program_destroy(incnn_program_t *program);

/* Program queries; `program` must be a live program. Thread-safe. */
incnn_task_t incnn_program_task(const incnn_program_t *program);
int32_t incnn_program_vocab_size(const incnn_program_t *program);
int32_t incnn_program_max_tokens(const incnn_program_t *program);
/* Number of floats in the output (logits); a token classifier's is per
 * token (its output holds this many times the token count). */
size_t incnn_program_output_size(const incnn_program_t *program);
/* Classifier label names: count, and the name of label `index` (NULL when
 * out of range). Strings live as long as the program. */
size_t incnn_program_num_labels(const incnn_program_t *program);
const char *incnn_program_label(const incnn_program_t *program, size_t index);
/* Whether the program carries a tokenizer (1) or not (0). */
int incnn_program_has_tokenizer(const incnn_program_t *program);

/* Tokenizes UTF-8 `text` (`text_size` bytes, no BOS) into `out_tokens`
 * (capacity `capacity`); *out_count receives the number of tokens, also
 * when the buffer is too small (INCNN_ERROR_BUFFER_TOO_SMALL). Thread-safe;
 * the message of a failure is available from incnn_last_error(). */
incnn_status_t incnn_program_tokenize(const incnn_program_t *program,
                                      const char *text, size_t text_size,
                                      int32_t *out_tokens, size_t capacity,
                                      size_t *out_count);

/* Creates a session for `program`, which must outlive it. A session holds
 * one document (a token sequence) and the cached state that lets it update
 * its output incrementally after edits. `options` may be NULL (defaults).
 * On failure *out_session is NULL and incnn_last_error() says why. */
incnn_status_t incnn_session_create(const incnn_program_t *program,
                                    const incnn_options_t *options,
                                    incnn_session_t **out_session);

/* Frees a session and joins its threads. NULL is ignored. */
void incnn_session_destroy(incnn_session_t *session);

/* Sets the document to `tokens[0..num_tokens)` and evaluates it from
 * scratch. Bad tokens (empty, longer than incnn_program_max_tokens, id out
 * of vocabulary) give INCNN_ERROR_INVALID_ARGUMENT and keep the previous
 * document. */
incnn_status_t incnn_session_reset(incnn_session_t *session,
                                   const int32_t *tokens, size_t num_tokens);

/* One token-level edit. Positions refer to the document as it is when the
 * edit applies (after the earlier edits of the same batch). */
typedef enum incnn_edit_kind_t {
  INCNN_EDIT_REPLACE = 0, /* tokens[0..num_tokens) overwrite from `at` */
  INCNN_EDIT_INSERT = 1,  /* tokens[0..num_tokens) inserted before `at` */
  INCNN_EDIT_DELETE = 2,  /* `count` tokens removed from `at` */
} incnn_edit_kind_t;

typedef struct incnn_edit_t {
  int32_t kind; /* an incnn_edit_kind_t; other values are rejected */
  int64_t at;
  const int32_t *tokens; /* replace / insert; borrowed for the call */
  size_t num_tokens;
  int64_t count; /* delete */
} incnn_edit_t;

/* Applies `edits[0..num_edits)` as one batch and updates the output
 * incrementally; the result is bit-for-bit that of incnn_session_reset on
 * the edited tokens. A rejected batch (bad position or token id, empty or
 * too long result, no document yet) gives INCNN_ERROR_INVALID_ARGUMENT and
 * leaves the session exactly as it was, and so does
 * INCNN_ERROR_OUT_OF_CONTRACT. INCNN_ERROR_INTERNAL (out of memory) leaves
 * the session without a document: reset it. Limits: num_edits <= 4096 and
 * each edit's num_tokens <= the program's max tokens, checked before any
 * copy. */
incnn_status_t incnn_session_apply(incnn_session_t *session,
                                   const incnn_edit_t *edits, size_t num_edits);

/* Single-edit shorthands for incnn_session_apply. */
incnn_status_t incnn_session_replace(incnn_session_t *session, int64_t at,
                                     const int32_t *tokens, size_t num_tokens);
incnn_status_t incnn_session_insert(incnn_session_t *session, int64_t at,
                                    const int32_t *tokens, size_t num_tokens);
incnn_status_t incnn_session_delete(incnn_session_t *session, int64_t at,
                                    int64_t count);

/* Copies the current output (logits) into `out` (`capacity` floats);
 * *out_count receives its size (incnn_program_output_size, times the token
 * count for a token classifier), also when the buffer is too small
 * (INCNN_ERROR_BUFFER_TOO_SMALL). `out` may be NULL when `capacity` is 0.
 * INCNN_ERROR_UNAVAILABLE before the first reset. */
incnn_status_t incnn_session_output(const incnn_session_t *session, float *out,
                                    size_t capacity, size_t *out_count);

/* A token classifier's output rows that the last reset or apply changed
 * (ascending; every row after a reset; rows whose token is new or whose
 * logits changed in any bit), copied like incnn_session_output. Other tasks
 * report no rows. */
incnn_status_t incnn_session_changed_rows(const incnn_session_t *session,
                                          int64_t *out, size_t capacity,
                                          size_t *out_count);

/* Copies the current document's tokens, like incnn_session_output. */
incnn_status_t incnn_session_tokens(const incnn_session_t *session,
                                    int32_t *out, size_t capacity,
                                    size_t *out_count);

/* Statistics of the last reset or apply. Always call incnn_stats_init first
 * (sets struct_size). */
typedef struct incnn_stats_t {
  size_t struct_size; /* set by incnn_stats_init */
  uint64_t macs;      /* multiply-accumulates performed */
  uint64_t macs_full; /* MACs of a from-scratch run on the same tokens */
  double micros;      /* wall time of the update */
  int64_t num_tokens; /* document length after the update */
  size_t num_layers;  /* entries of incnn_session_layer_stats */
  size_t num_vq;      /* entries of incnn_session_code_flips */
} incnn_stats_t;

void incnn_stats_init(incnn_stats_t *stats);
incnn_status_t incnn_session_stats(const incnn_session_t *session,
                                   incnn_stats_t *out_stats);

/* Per attention layer: rows recomputed in full (`dirty_rows`) and other rows
 * whose attention got delta updates (`updated_rows`). Either buffer may be
 * NULL; each holds `capacity` entries, at least num_layers. */
incnn_status_t incnn_session_layer_stats(const incnn_session_t *session,
                                         int64_t *dirty_rows,
                                         int64_t *updated_rows,
                                         size_t capacity);

/* Per VQ op: rows whose codes changed; `capacity` at least num_vq. */
incnn_status_t incnn_session_code_flips(const incnn_session_t *session,
                                        int64_t *code_flips, size_t capacity);

/* The statistics of the last reset or apply as one compact JSON object, the
 * "stats" of incnn-run --json with the same keys (docs/json.md), written to
 * `out` with a terminating NUL. *out_size receives the text's length without
 * the NUL, also when the buffer is too small (INCNN_ERROR_BUFFER_TOO_SMALL:
 * `capacity` must be at least *out_size + 1). `out` may be NULL when
 * `capacity` is 0. */
incnn_status_t incnn_session_stats_json(const incnn_session_t *session,
                                        char *out, size_t capacity,
                                        size_t *out_size);

/* Shorthand: incnn_session_reset, then incnn_session_output into
 * `out_logits` (`capacity` at least incnn_program_output_size, times
 * `num_tokens` for a token classifier). */
incnn_status_t incnn_session_evaluate(incnn_session_t *session,
                                      const int32_t *tokens, size_t num_tokens,
                                      float *out_logits, size_t capacity);

/* Multiply-accumulates of the last reset or apply (0 before any). */
uint64_t incnn_session_macs(const incnn_session_t *session);

/* Message of the session's last failed call ("" if none). Valid until the
 * next call on the session. */
const char *incnn_session_last_error(const incnn_session_t *session);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* INCNN_RUNTIME_INCNN_H */
