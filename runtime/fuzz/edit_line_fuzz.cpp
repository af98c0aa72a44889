//===- edit_line_fuzz.cpp - libFuzzer target for the edits-file parser ----===//
//
// Arbitrary bytes as one edits line: parseEditLine returns an error or
// edits that respect its limits; a parsed batch is then applied to a
// session (valid or not), which must stay exact or unchanged.
//
//   incnn-edit-line-fuzz runtime/fuzz/corpus/edit_line -max_total_time=600
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Runtime.h"

#include "ProgramBuilder.h"

#include <cstdlib>
#include <cstring>

using namespace incnn::runtime;

namespace {
struct Fixture {
  Program program;
  std::unique_ptr<Session> session;
  std::unique_ptr<Evaluator> oracle;
  Fixture() {
    DecoderConfig c;
    c.position = "none";
    c.vocab = 20;
    c.maxPositions = 24;
    c.vq = {{0, false, 1, 4}};
    program = buildDecoder(c);
    session = std::make_unique<Session>(program, SessionOptions{1});
    oracle = std::make_unique<Evaluator>(program, EvaluatorOptions{1});
  }
};
Fixture &fixture() {
  static Fixture f;
  return f;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Fixture &f = fixture();
  EditLine parsed;
  std::string_view line(reinterpret_cast<const char *>(data), size);
  Status st = parseEditLine(line, f.program.vocabSize,
                            size_t(f.program.maxPositions), parsed);
  if (!st.ok()) {
    if (st.error.empty())
      std::abort();
    return 0;
  }
  if (parsed.tokenEdits.empty() == parsed.textEdits.empty())
    std::abort(); // exactly one kind per line
  for (const TokenEdit &e : parsed.tokenEdits)
    if (e.tokens.size() > size_t(f.program.maxPositions))
      std::abort();
  if (parsed.tokenEdits.empty())
    return 0;
  if (!f.session->reset({1, 2, 3, 4, 5, 6}).ok())
    std::abort();
  std::vector<int32_t> tokens = f.session->tokens();
  std::vector<float> output = f.session->output();
  if (!f.session->apply(parsed.tokenEdits).ok()) {
    if (f.session->tokens() != tokens || f.session->output() != output)
      std::abort(); // a rejected batch changed the session
    return 0;
  }
  if (!f.oracle->evaluate(f.session->tokens()).ok() ||
      std::memcmp(f.oracle->output().data(), f.session->output().data(),
                  sizeof(float) * output.size()) != 0)
    std::abort(); // incremental differs from scratch
  return 0;
}
