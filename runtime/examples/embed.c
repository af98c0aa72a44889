/*===- embed.c - Example: evaluate a program through the C API ------------===*\
|*                                                                            *|
|* Usage: incnn-embed-example MODEL.incnn ID [ID ...]                         *|
|*        incnn-embed-example MODEL.incnn --text "some text"                  *|
|* Prints the output vector (logits), one value per line, and the argmax.     *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#include "incnn/runtime/incnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.incnn (ID... | --text TEXT)\n", argv[0]);
    return 2;
  }
  printf("incnn %s\n", incnn_version());
  incnn_program_t *program = NULL;
  if (incnn_program_load(argv[1], &program) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_last_error());
    return 1;
  }
  int rc = 1;
  incnn_session_t *session = NULL;
  int32_t *tokens = NULL;
  float *logits = NULL;
  size_t num_tokens = 0;
  if (strcmp(argv[2], "--text") == 0) {
    const char *text = argc > 3 ? argv[3] : "";
    size_t cap = strlen(text) + 1;
    tokens = malloc(cap * sizeof(int32_t));
    if (!tokens || incnn_program_tokenize(program, text, strlen(text), tokens,
                                          cap, &num_tokens) != INCNN_OK) {
      fprintf(stderr, "error: %s\n", incnn_last_error());
      goto done;
    }
  } else {
    num_tokens = (size_t)(argc - 2);
    tokens = malloc(num_tokens * sizeof(int32_t));
    if (!tokens)
      goto done;
    for (size_t i = 0; i < num_tokens; ++i)
      tokens[i] = (int32_t)strtol(argv[i + 2], NULL, 10);
  }

  incnn_options_t options;
  incnn_options_init(&options);
  options.num_threads = 0;
  if (incnn_session_create(program, &options, &session) != INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_last_error());
    goto done;
  }
  size_t out_size = incnn_program_output_size(program);
  logits = malloc(out_size * sizeof(float));
  if (!logits)
    goto done;
  if (incnn_session_evaluate(session, tokens, num_tokens, logits, out_size) !=
      INCNN_OK) {
    fprintf(stderr, "error: %s\n", incnn_session_last_error(session));
    goto done;
  }
  size_t best = 0;
  for (size_t i = 0; i < out_size; ++i) {
    if (logits[i] > logits[best])
      best = i;
    if (out_size <= 16)
      printf("%g\n", (double)logits[i]);
  }
  const char *label = incnn_program_label(program, best);
  printf("argmax %zu%s%s, %llu MACs\n", best, label ? " " : "",
         label ? label : "", (unsigned long long)incnn_session_macs(session));
  rc = 0;
done:
  free(logits);
  free(tokens);
  incnn_session_destroy(session);
  incnn_program_destroy(program);
  return rc;
}
