//===- ServeApiFuzz.cpp - libFuzzer target for incnn-serve's API ----------===//
//
// The input is a script of requests against one live document: raw bodies
// (any bytes) and well-formed edit batches with fuzzed offsets and texts,
// posted to the edits endpoint, plus gets, deletes, raw creates and PUTs of
// client-named documents. A
// reference Document over its own session mirrors every batch the server
// accepts: the server must accept exactly what the reference accepts, answer
// the same output bit for bit, and leave the document unchanged when it
// refuses.
//
//   incnn-serve-api-fuzz tools/incnn-serve/fuzz/corpus -max_total_time=600
//
//===----------------------------------------------------------------------===//

#include "ServeApi.h"

#include "ProgramBuilder.h"
#include "TrainTokenizer.h"

#include <cstdlib>
#include <cstring>

using namespace incnn::runtime;
using namespace incnn::serve;
using json = nlohmann::json;

namespace {

const char *kStartText = "the quick brown fox \xc3\xbc"
                         "ber the lazy dog";

struct Fixture {
  std::unique_ptr<Tokenizer> tokenizer;
  Program program;
  std::unique_ptr<DocumentServer> server;
  Fixture() {
    if (!Tokenizer::create(incnn::test::trainTokenizer(), tokenizer).ok())
      std::abort();
    DecoderConfig c;
    c.position = "none";
    c.vocab = tokenizer->vocabSize();
    c.maxPositions = 48;
    c.task = TaskKind::Classifier;
    c.vq = {{0, false, 1, 4}};
    program = buildDecoder(c);
    ServeLimits limits;
    limits.maxDocuments = 4;
    limits.measureMemory = false;
    server = std::make_unique<DocumentServer>(program, *tokenizer, limits);
  }
};

Fixture &fixture() {
  static Fixture f;
  return f;
}

void check(bool ok) {
  if (!ok)
    std::abort();
}

/// The float32 bits of a JSON output array (NaN for null).
std::vector<uint32_t> bitsOf(const json &output) {
  std::vector<uint32_t> bits;
  for (const json &x : output) {
    float f = x.is_number() ? float(x.get<double>()) : __builtin_nanf("");
    uint32_t b;
    std::memcpy(&b, &f, 4);
    bits.push_back(b);
  }
  return bits;
}

std::vector<uint32_t> bitsOf(const std::vector<float> &output) {
  std::vector<uint32_t> bits(output.size());
  std::memcpy(bits.data(), output.data(), 4 * output.size());
  return bits;
}

/// The text edits of a body the server accepted.
std::vector<TextEdit> editsOf(const json &body) {
  std::vector<TextEdit> edits;
  for (const json &e : body.at("edits"))
    edits.push_back({e.at("start").get<int64_t>(), e.at("end").get<int64_t>(),
                     e.at("text").get<std::string>()});
  return edits;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Fixture &f = fixture();
  DocumentServer &server = *f.server;
  ApiReply created = server.handle(
      {"POST", "/v1/documents", json{{"text", kStartText}}.dump(), nullptr});
  check(created.status == 200);
  std::string path = "/v1/documents/" + created.body["id"].get<std::string>();
  Session refSession(f.program, SessionOptions{1});
  Document ref(refSession, *f.tokenizer);
  check(ref.reset(kStartText).ok());
  size_t at = 0;
  while (at + 2 <= size) {
    uint8_t op = data[at] % 5;
    size_t len = std::min<size_t>(data[at + 1], size - at - 2);
    std::string bytes(reinterpret_cast<const char *>(data + at + 2), len);
    at += 2 + len;
    std::string body = bytes;
    if (op == 1) { // a well-formed batch of fuzzed edits
      json edits = json::array();
      int64_t n = int64_t(ref.text().size());
      for (size_t i = 0; i + 3 <= bytes.size() && edits.size() < 3;) {
        int64_t start = uint8_t(bytes[i]) % (n + 3);
        int64_t end = start + uint8_t(bytes[i + 1]) % 6;
        size_t tlen =
            std::min<size_t>(uint8_t(bytes[i + 2]) % 8, bytes.size() - i - 3);
        std::string text = bytes.substr(i + 3, tlen);
        i += 3 + tlen;
        json e{{"start", start}, {"end", end}};
        // Invalid UTF-8 cannot be sent as a JSON string: keep what can.
        e["text"] = json::parse(
            json(text).dump(-1, ' ', false, json::error_handler_t::ignore));
        edits.push_back(e);
      }
      body = json{{"edits", edits}, {"verify", bytes.size() % 3 == 0}}.dump();
    }
    if (op <= 1) {
      ApiReply before = server.handle({"GET", path, "", nullptr});
      ApiReply r = server.handle({"POST", path + "/edits", body, nullptr});
      if (r.status == 404)
        break; // evicted by a create below: nothing left to compare
      if (r.status != 200) {
        check(r.status >= 400 && r.status < 500 && r.body.contains("error"));
        check(server.handle({"GET", path, "", nullptr}).body == before.body);
        // The reference refuses it too (a well-formed batch), unless the
        // server's token budget did.
        if (op == 1 && r.status != 413) {
          Document::Plan plan;
          check(!ref.plan(editsOf(json::parse(body)), plan).ok() ||
                !ref.commit(std::move(plan)).ok());
        }
        continue;
      }
      Document::Plan plan;
      check(ref.plan(editsOf(json::parse(body)), plan).ok());
      check(ref.commit(std::move(plan)).ok());
      check(bitsOf(r.body["output"]) == bitsOf(refSession.output()));
      if (r.body.contains("exact"))
        check(r.body["exact"].get<bool>());
    } else if (op == 2) {
      ApiReply r = server.handle({"GET", path, "", nullptr});
      check(r.status == 200 || r.status == 404);
      if (r.status == 200)
        check(r.body["text_bytes"] == ref.text().size());
    } else if (op == 3) { // a raw create or any other path
      static const char *methods[] = {"POST", "GET", "PUT", "DELETE"};
      std::string p = bytes.size() % 2 ? "/v1/documents" : "/" + bytes;
      if (bytes.size() % 5 == 0) // a client-named document, or a bad name
        p = "/v1/documents/" + bytes.substr(0, bytes.size() / 2);
      ApiReply r =
          server.handle({methods[bytes.size() % 4], p, bytes, nullptr});
      check(r.status >= 200 && r.status < 600 &&
            (r.body.is_object() || !r.contentType.empty()));
    } else {
      ApiReply r =
          server.handle({"DELETE", "/v1/documents/" + bytes, "", nullptr});
      check(r.status == 200 || r.status == 404);
    }
  }
  server.handle({"DELETE", path, "", nullptr});
  return 0;
}
