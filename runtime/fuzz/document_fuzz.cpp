//===- document_fuzz.cpp - libFuzzer target for Document text edits -------===//
//
// The input is a script of byte-range text edits (offsets anywhere,
// replacement bytes arbitrary, UTF-8 or not) applied to a small document over
// a session. Each accepted edit must leave the document's tokens equal to a
// full tokenization of its text and the session's output equal, bit for bit,
// to a from-scratch run; each rejected one must change nothing.
//
//   incnn-document-fuzz runtime/fuzz/corpus/document -max_total_time=600
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Document.h"
#include "incnn/runtime/Runtime.h"

#include "ProgramBuilder.h"

#include "TrainTokenizer.h"

#include <cstdlib>
#include <cstring>

using namespace incnn::runtime;

namespace {

struct Fixture {
  std::unique_ptr<Tokenizer> tokenizer;
  Program program;
  std::unique_ptr<Session> session;
  std::unique_ptr<Evaluator> oracle;
  Fixture() {
    if (!Tokenizer::create(incnn::test::trainTokenizer(), tokenizer).ok())
      std::abort();
    DecoderConfig c;
    c.position = "none";
    c.vocab = tokenizer->vocabSize();
    c.maxPositions = 40; // short: edits also cross the window's end
    c.task = TaskKind::Classifier;
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
  Document doc(*f.session, *f.tokenizer);
  if (!doc.reset("the quick brown fox \xc3\xbc"
                 "ber the lazy dog")
           .ok())
    std::abort();
  size_t at = 0;
  // Each edit: start (1 byte), length (1 byte), text length (1 byte), text.
  while (at + 3 <= size) {
    int64_t n = int64_t(doc.text().size());
    int64_t start = n ? data[at] % (n + 1) : 0;
    int64_t end = std::min<int64_t>(n, start + data[at + 1] % 8);
    size_t len = std::min<size_t>(data[at + 2] % 16, size - at - 3);
    std::string text(reinterpret_cast<const char *>(data + at + 3), len);
    at += 3 + len;
    std::string before = doc.text();
    std::vector<int32_t> tokensBefore = f.session->tokens();
    Status st = doc.applyText(start, end, text);
    if (!st.ok()) {
      if (doc.text() != before || f.session->tokens() != tokensBefore)
        std::abort(); // a rejected edit changed the document
      continue;
    }
    if (!doc.verifyTokens().ok())
      std::abort(); // tokens differ from a full tokenization
    if (doc.allTokens().empty())
      continue;
    const std::vector<float> &got = f.session->output();
    if (!f.oracle->evaluate(f.session->tokens()).ok() ||
        f.oracle->output().size() != got.size() ||
        std::memcmp(f.oracle->output().data(), got.data(),
                    sizeof(float) * got.size()) != 0)
      std::abort(); // incremental differs from scratch
  }
  return 0;
}
