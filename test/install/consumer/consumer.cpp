//===- consumer.cpp - a C++ program against the installed incnn runtime ---===//
//
// Usage: incnn-consumer MODEL.incnn TEXT_FILE
//
// Built out of tree against an installed prefix (find_package(incnn) or
// pkg-config incnn; test/install/install_consumer.sh). Loads a program, opens
// a Document on the text, applies text edits and a token edit incrementally,
// and checks after each that the session's output equals a from-scratch
// Evaluator run on the same tokens bit for bit. Prints one line per step
// (the output as "%.9g", which round-trips a float) so that the builds
// against the shared and the static library can be compared.
//
//===----------------------------------------------------------------------===//

#include <incnn/runtime/Document.h>
#include <incnn/runtime/Program.h>
#include <incnn/runtime/Runtime.h>
#include <incnn/runtime/Session.h>
#include <incnn/runtime/Tokenizer.h>
#include <incnn/runtime/incnn.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace incnn::runtime;

namespace {

int fail(const std::string &what, const Status &st) {
  std::fprintf(stderr, "consumer: %s: %s\n", what.c_str(), st.error.c_str());
  return 1;
}

/// Compares the session with a from-scratch run and prints the step.
bool check(const Program &program, const Session &session, int step) {
  Evaluator scratch(program, EvaluatorOptions{1});
  Status st = scratch.evaluate(session.tokens());
  if (!st.ok()) {
    std::fprintf(stderr, "consumer: step %d: evaluate: %s\n", step,
                 st.error.c_str());
    return false;
  }
  const std::vector<float> &a = session.output(), &b = scratch.output();
  if (a.size() != b.size() ||
      std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) {
    std::fprintf(stderr, "consumer: step %d: output differs from scratch\n",
                 step);
    return false;
  }
  const EditStats &stats = session.stats();
  std::printf("step %d: %zu tokens, %llu MACs (from scratch %llu):", step,
              session.tokens().size(), (unsigned long long)stats.macs,
              (unsigned long long)stats.macsFull);
  for (float v : a)
    std::printf(" %.9g", double(v));
  std::printf("\n");
  return true;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.incnn TEXT_FILE\n", argv[0]);
    return 2;
  }
  Program program;
  Status st = loadProgram(argv[1], program);
  if (!st.ok())
    return fail(argv[1], st);
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    return fail(argv[2], Status::ioError("cannot read"));

  std::unique_ptr<Tokenizer> tokenizer;
  if (!(st = Tokenizer::create(program.tokenizer, tokenizer)).ok())
    return fail("tokenizer", st);
  Session session(program, SessionOptions{1, true});
  std::vector<int32_t> prefix;
  if (program.task == TaskKind::CausalLM && program.bosTokenId >= 0)
    prefix.push_back(program.bosTokenId);
  Document doc(session, *tokenizer, prefix);
  if (!(st = doc.reset(text.str())).ok())
    return fail("reset", st);
  int step = 0;
  if (!check(program, session, step++))
    return 1;

  // Text edits: an insertion, a replacement inside the text, a deletion.
  const std::string &t = doc.text();
  size_t line2 = t.find('\n') + 1;
  struct {
    int64_t start, end;
    const char *text;
  } edits[] = {
      {0, 0, "Draft: "},
      {int64_t(line2), int64_t(line2), "This PEP describes a new process. "},
      {20, 40, " informational note "},
      {5, 12, ""},
  };
  for (const auto &e : edits) {
    if (!(st = doc.applyText(e.start, e.end, e.text)).ok())
      return fail("edit", st);
    if (!(st = doc.verifyTokens()).ok())
      return fail("tokens after edit", st);
    if (!check(program, session, step++))
      return 1;
  }
  // A token edit straight on the session (the document is left behind).
  if (!(st = session.apply(TokenEdit::replace(3, {session.tokens()[7]}))).ok())
    return fail("token edit", st);
  if (!check(program, session, step++))
    return 1;
  std::printf("consumer: %d steps equal to from-scratch runs bit for bit "
              "(incnn %s)\n",
              step, incnn_version());
  return 0;
}
