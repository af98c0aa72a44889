/*===- embed.c - Example: incremental evaluation through the C API --------===*\
|*                                                                            *|
|* Usage: incnn-embed-example MODEL.incnn (TOKENS | --text TEXT) [EDIT ...]   *|
|*   TOKENS  token ids separated by spaces or commas, e.g. "1 5 9"            *|
|*   EDIT    replace:AT:ID[,ID...] | insert:AT:ID[,ID...] | delete:AT:COUNT   *|
|*                                                                            *|
|* Loads a program, opens a session on the document (step 0), then applies    *|
|* each EDIT incrementally. After every step it prints the statistics and the *|
|* output (logits, "%.9g", which round-trips a float) on one line.            *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#include "incnn/runtime/incnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses ids separated by spaces or commas into a new array; NULL on a bad
 * id or out of memory. */
static int32_t *parse_ids(const char *s, size_t *count) {
  size_t cap = strlen(s) / 2 + 1, n = 0;
  int32_t *ids = malloc(cap * sizeof(int32_t));
  if (!ids)
    return NULL;
  while (*s) {
    if (*s == ' ' || *s == ',') {
      ++s;
      continue;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > INT32_MAX) {
      free(ids);
      return NULL;
    }
    ids[n++] = (int32_t)v;
    s = end;
  }
  *count = n;
  return ids;
}

/* Parses "kind:AT:ARG" into `edit` (token array allocated). 0 on success. */
static int parse_edit(const char *spec, incnn_edit_t *edit) {
  const char *colon = strchr(spec, ':');
  if (!colon)
    return 1;
  size_t kind_len = (size_t)(colon - spec);
  char *end;
  long long at = strtoll(colon + 1, &end, 10);
  if (end == colon + 1 || *end != ':')
    return 1;
  const char *arg = end + 1;
  memset(edit, 0, sizeof(*edit));
  edit->at = at;
  if (kind_len == 6 && strncmp(spec, "delete", 6) == 0) {
    edit->kind = INCNN_EDIT_DELETE;
    edit->count = strtoll(arg, &end, 10);
    return end == arg || *end != '\0';
  }
  if (kind_len == 7 && strncmp(spec, "replace", 7) == 0)
    edit->kind = INCNN_EDIT_REPLACE;
  else if (kind_len == 6 && strncmp(spec, "insert", 6) == 0)
    edit->kind = INCNN_EDIT_INSERT;
  else
    return 1;
  edit->tokens = parse_ids(arg, &edit->num_tokens);
  return edit->tokens == NULL;
}

/* Prints the statistics and output of the session's last step. */
static int print_step(const incnn_program_t *program,
                      const incnn_session_t *session, int step, float *out,
                      size_t out_size) {
  incnn_stats_t stats;
  incnn_stats_init(&stats);
  size_t count = 0;
  if (incnn_session_stats(session, &stats) != INCNN_OK ||
      incnn_session_output(session, out, out_size, &count) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_session_last_error(session));
    return 1;
  }
  size_t best = 0;
  for (size_t i = 1; i < count; ++i)
    if (out[i] > out[best])
      best = i;
  const char *label = incnn_program_label(program, best);
  printf(
      "step %d: %lld tokens, %llu MACs (from scratch %llu), argmax %zu%s%s\n",
      step, (long long)stats.num_tokens, (unsigned long long)stats.macs,
      (unsigned long long)stats.macs_full, best, label ? " " : "",
      label ? label : "");
  printf("output:");
  for (size_t i = 0; i < count; ++i)
    printf(" %.9g", (double)out[i]);
  printf("\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: %s MODEL.incnn (TOKENS | --text TEXT) [EDIT ...]\n"
            "  EDIT: replace:AT:ID[,ID...] | insert:AT:ID[,ID...] | "
            "delete:AT:COUNT\n",
            argv[0]);
    return 2;
  }
  incnn_program_t *program = NULL;
  if (incnn_program_load(argv[1], &program) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_last_error());
    return 1;
  }
  int rc = 1;
  incnn_session_t *session = NULL;
  int32_t *tokens = NULL;
  float *out = NULL;
  size_t num_tokens = 0;
  int first_edit = 3;
  if (strcmp(argv[2], "--text") == 0) {
    const char *text = argc > 3 ? argv[3] : "";
    size_t cap = strlen(text) + 1;
    first_edit = 4;
    tokens = malloc(cap * sizeof(int32_t));
    if (!tokens || incnn_program_tokenize(program, text, strlen(text), tokens,
                                          cap, &num_tokens) != INCNN_OK) {
      fprintf(stderr, "error: %s\n", incnn_last_error());
      goto done;
    }
  } else if (!(tokens = parse_ids(argv[2], &num_tokens))) {
    fprintf(stderr, "error: bad token list '%s'\n", argv[2]);
    goto done;
  }

  incnn_options_t options;
  incnn_options_init(&options);
  options.num_threads = 1;
  if (incnn_session_create(program, &options, &session) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_last_error());
    goto done;
  }
  size_t out_size = incnn_program_output_size(program);
  out = malloc(out_size * sizeof(float));
  if (!out)
    goto done;
  if (incnn_session_reset(session, tokens, num_tokens) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_session_last_error(session));
    goto done;
  }
  if (print_step(program, session, 0, out, out_size))
    goto done;
  for (int i = first_edit; i < argc; ++i) {
    incnn_edit_t edit;
    if (parse_edit(argv[i], &edit)) {
      fprintf(stderr, "error: bad edit '%s'\n", argv[i]);
      goto done;
    }
    incnn_status_t st = incnn_session_apply(session, &edit, 1);
    free((void *)edit.tokens);
    if (st != INCNN_OK) {
      fprintf(stderr, "error: edit '%s': %s\n", argv[i],
              incnn_session_last_error(session));
      goto done;
    }
    if (print_step(program, session, i - first_edit + 1, out, out_size))
      goto done;
  }
  rc = 0;
done:
  free(out);
  free(tokens);
  incnn_session_destroy(session);
  incnn_program_destroy(program);
  return rc;
}
