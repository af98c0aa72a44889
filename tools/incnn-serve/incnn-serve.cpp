//===- incnn-serve.cpp - keep documents live over HTTP
//---------------------===//
//
//   incnn-serve MODEL.incnn [--host 127.0.0.1] [--port 8080]
//               [--max-documents N] [--memory-budget MB] [--threads T]
//
// One process holds many documents, each an incremental session over the
// one loaded program (weights mapped once and shared). Clients create a
// document from its text, post text edits (UTF-8 byte offsets) and get the
// updated output with what the update cost. The JSON API is in
// docs/serve.md. Requests to different documents run in parallel; requests
// to one document are serialized. When the documents' caches exceed the
// memory budget (or their count exceeds --max-documents), the least recently
// used ones are evicted: their ids answer 404 saying so.
//
// cpp-httplib (Debian's libcpp-httplib-dev): a small blocking server with a
// thread pool, which is all a request/response API on loopback needs.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Document.h"
#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Runtime.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "page.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>

using namespace incnn::runtime;
using json = nlohmann::json;

namespace {

struct Options {
  std::string model, host = "127.0.0.1", sample;
  int port = 8080, threads = 1;
  int64_t maxDocuments = 64, memoryBudgetMB = 2048;
};

[[noreturn]] void usage(const std::string &error) {
  std::fprintf(stderr,
               "incnn-serve: %s\nusage: incnn-serve MODEL.incnn [--host H] "
               "[--port P] [--max-documents N] [--memory-budget MB] "
               "[--threads T] [--sample TEXT_FILE]\n",
               error.c_str());
  std::exit(2);
}

Options parseArgs(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](int64_t lo, int64_t hi) {
      std::string v = value();
      char *end = nullptr;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || n < lo || n > hi)
        usage(a + " must be an integer in [" + std::to_string(lo) + ", " +
              std::to_string(hi) + "], got '" + v + "'");
      return int64_t(n);
    };
    if (a == "--host")
      o.host = value();
    else if (a == "--sample")
      o.sample = value();
    else if (a == "--port")
      o.port = int(number(0, 65535));
    else if (a == "--threads")
      o.threads = int(number(0, 256));
    else if (a == "--max-documents")
      o.maxDocuments = number(1, 1 << 20);
    else if (a == "--memory-budget")
      o.memoryBudgetMB = number(1, int64_t(1) << 30);
    else if (a == "-h" || a == "--help")
      usage("help");
    else if (!a.empty() && a[0] == '-')
      usage("unknown option " + a);
    else if (o.model.empty())
      o.model = a;
    else
      usage("one model only");
  }
  if (o.model.empty())
    usage("no model given");
  return o;
}

/// Most byte ranges one answer highlights.
constexpr size_t kMaxHighlights = 4096;

/// A request that fails: its HTTP status and message.
struct HttpError {
  int status;
  std::string message;
};

json floats(const std::vector<float> &v) {
  json a = json::array();
  for (float x : v) // every float prints exactly as a double
    a.push_back(std::isfinite(x) ? json(double(x)) : json(nullptr));
  return a;
}

/// One live document: its session and text, used by one request at a time.
struct Entry {
  Entry(const Program &program, const Tokenizer &tokenizer, int threads)
      : session(program, SessionOptions{threads}),
        document(session, tokenizer) {}
  std::mutex mutex;
  Session session;
  Document document;
  int64_t bytes = 0; ///< cache bytes after the last request
};

class Server {
public:
  Server(const Options &options, const Program &program,
         const Tokenizer &tokenizer)
      : options(options), program(program), tokenizer(tokenizer),
        verifier(program, EvaluatorOptions{options.threads}) {
    if (!verifier.prepare().ok())
      throw std::runtime_error("cannot prepare the weights");
  }

  json create(const json &body) {
    std::string text = textField(body, "text");
    auto entry = std::make_shared<Entry>(program, tokenizer, options.threads);
    auto t0 = std::chrono::steady_clock::now();
    if (Status st = entry->document.reset(text); !st.ok())
      throw HttpError{st.outsideContract ? 422 : 400, st.error};
    double us = std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
    entry->bytes = entry->session.cacheBytes();
    std::string id = newId();
    {
      std::lock_guard<std::mutex> lock(mutex);
      documents[id] = entry;
      touch(id);
      evict(id);
    }
    json r = describe(*entry);
    r["id"] = id;
    r["stats"] = stats(*entry, us, 0, {});
    return r;
  }

  json edit(const std::string &id, const json &body) {
    std::shared_ptr<Entry> entry = find(id);
    if (!body.contains("edits") || !body["edits"].is_array())
      throw HttpError{400, "the body needs an 'edits' array"};
    if (body["edits"].size() > kMaxEditsPerBatch)
      throw HttpError{413, "more than " + std::to_string(kMaxEditsPerBatch) +
                               " edits in one request"};
    bool verify = body.contains("verify") && body["verify"].is_boolean() &&
                  body["verify"].get<bool>();
    std::vector<TextEdit> edits;
    for (size_t i = 0; i < body["edits"].size(); ++i) {
      const json &e = body["edits"][i];
      std::string where = "edit " + std::to_string(i) + ": ";
      if (!e.is_object() || !e.contains("start") || !e.contains("end") ||
          !e["start"].is_number_integer() || !e["end"].is_number_integer())
        throw HttpError{400, where + "needs integer 'start' and 'end'"};
      std::string text =
          e.contains("text") ? textField(e, "text", where) : std::string();
      edits.push_back(
          {e["start"].get<int64_t>(), e["end"].get<int64_t>(), text});
    }
    std::lock_guard<std::mutex> lock(entry->mutex);
    auto t0 = std::chrono::steady_clock::now();
    Document::Plan plan;
    if (Status st = entry->document.plan(edits, plan); !st.ok())
      throw HttpError{st.outsideContract ? 422 : 400, st.error};
    std::vector<TokenEdit> tokenEdits = plan.tokenEdits;
    double tokenizeUs = plan.tokenizeMicros;
    if (Status st = entry->document.commit(std::move(plan)); !st.ok())
      throw HttpError{st.outsideContract ? 422 : 400, st.error};
    double us = std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
    entry->bytes = entry->session.cacheBytes();
    json r = describe(*entry);
    r["stats"] = stats(*entry, us, tokenizeUs, tokenEdits);
    if (verify)
      r["exact"] = matchesFromScratch(*entry);
    {
      std::lock_guard<std::mutex> registry(mutex);
      touch(id);
      evict(id);
    }
    return r;
  }

  json get(const std::string &id) {
    std::shared_ptr<Entry> entry = find(id);
    std::lock_guard<std::mutex> lock(entry->mutex);
    json r = describe(*entry);
    r["text_bytes"] = entry->document.text().size();
    r["tokens"] = entry->document.allTokens().size();
    return r;
  }

  void remove(const std::string &id) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!documents.erase(id))
      throw notFound(id);
    lru.remove(id);
  }

  json model() const {
    json r;
    r["labels"] = program.labels;
    r["task"] =
        program.task == TaskKind::Classifier ? "classifier" : "causal_lm";
    r["vocab_size"] = program.vocabSize;
    r["window"] = program.maxPositions;
    r["cache_bytes_per_token"] = cacheBytesPerToken(program);
    r["max_text_bytes"] = kMaxTextBytes;
    return r;
  }

  json health() {
    std::lock_guard<std::mutex> lock(mutex);
    json r;
    r["ok"] = true;
    r["documents"] = documents.size();
    r["evicted"] = evictions;
    int64_t bytes = 0;
    for (const auto &[id, e] : documents)
      bytes += e->bytes;
    r["cache_bytes"] = bytes;
    return r;
  }

private:
  static std::string textField(const json &body, const char *key,
                               const std::string &where = "") {
    if (!body.is_object() || !body.contains(key) || !body[key].is_string())
      throw HttpError{400, where + "needs a string '" + key + "'"};
    std::string text = body[key].get<std::string>();
    if (text.size() > kMaxTextBytes)
      throw HttpError{413, where + "'" + key + "' has " +
                               std::to_string(text.size()) +
                               " bytes, over the limit of " +
                               std::to_string(kMaxTextBytes)};
    return text;
  }

  HttpError notFound(const std::string &id) const {
    if (evicted.count(id))
      return {404, "document " + id +
                       " was evicted (the memory budget or document limit "
                       "was reached): create it again"};
    return {404, "no document " + id};
  }

  std::shared_ptr<Entry> find(const std::string &id) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = documents.find(id);
    if (it == documents.end())
      throw notFound(id);
    return it->second;
  }

  std::string newId() {
    static const char digits[] = "0123456789abcdef";
    std::lock_guard<std::mutex> lock(mutex);
    std::string id;
    do {
      id.clear();
      for (int i = 0; i < 16; ++i)
        id += digits[rng() % 16];
    } while (documents.count(id));
    return id;
  }

  /// Marks `id` most recently used (under `mutex`).
  void touch(const std::string &id) {
    lru.remove(id);
    lru.push_front(id);
  }

  /// Evicts least recently used documents other than `keep` while over the
  /// limits (under `mutex`). A request still holding one finishes on it.
  void evict(const std::string &keep) {
    auto over = [&]() {
      int64_t bytes = 0;
      for (const auto &[id, e] : documents)
        bytes += e->bytes;
      return int64_t(documents.size()) > options.maxDocuments ||
             bytes > options.memoryBudgetMB * (int64_t(1) << 20);
    };
    while (documents.size() > 1 && over()) {
      std::string victim = lru.back();
      if (victim == keep)
        break;
      lru.pop_back();
      documents.erase(victim);
      evicted.insert(victim);
      ++evictions;
    }
  }

  json describe(Entry &e) {
    json r;
    const std::vector<float> &out = e.session.output();
    r["output"] = floats(out);
    if (program.task == TaskKind::Classifier && !out.empty()) {
      size_t best = 0;
      for (size_t i = 1; i < out.size(); ++i)
        if (out[i] > out[best])
          best = i;
      r["prediction"] = best < program.labels.size()
                            ? program.labels[best]
                            : "LABEL_" + std::to_string(best);
      r["labels"] = program.labels;
    }
    return r;
  }

  json stats(Entry &e, double us, double tokenizeUs,
             const std::vector<TokenEdit> &edits) {
    const EditStats &s = e.session.stats();
    json r;
    r["us"] = us;
    r["update_us"] = s.micros;
    r["tokenize_us"] = tokenizeUs;
    r["macs"] = s.macs;
    r["macs_full"] = s.macsFull;
    r["tokens"] = s.numTokens;
    r["dirty_rows"] = s.dirtyRows;
    r["updated_rows"] = s.updatedRows;
    r["code_flips"] = s.codeFlips;
    json changed = json::array();
    for (const TokenEdit &t : edits) {
      int64_t count =
          t.kind == TokenEdit::Kind::Delete ? 0 : int64_t(t.tokens.size());
      if (count > 0)
        changed.push_back({t.at, t.at + count - 1});
    }
    r["changed_tokens"] = changed;
    // The text the recomputed and written tokens cover, as merged byte
    // ranges (the page highlights them).
    std::vector<int64_t> rows = s.recomputedRows;
    for (const TokenEdit &t : edits)
      if (t.kind != TokenEdit::Kind::Delete)
        for (size_t k = 0; k < t.tokens.size(); ++k)
          rows.push_back(t.at + int64_t(k));
    std::sort(rows.begin(), rows.end());
    json ranges = json::array();
    int64_t lastEnd = -1;
    for (int64_t row : rows) {
      int64_t begin, end;
      e.document.tokenBytes(row, begin, end);
      if (begin >= end)
        continue;
      if (!ranges.empty() && begin <= lastEnd) {
        lastEnd = std::max(lastEnd, end);
        ranges.back()[1] = lastEnd;
      } else if (ranges.size() < kMaxHighlights) {
        ranges.push_back({begin, end});
        lastEnd = end;
      }
    }
    r["recomputed_bytes"] = ranges;
    r["cache_bytes"] = e.bytes;
    return r;
  }

  bool matchesFromScratch(Entry &e) {
    std::lock_guard<std::mutex> lock(verifyMutex);
    if (!e.document.verifyTokens().ok())
      return false;
    if (!verifier.evaluate(e.session.tokens()).ok())
      return false;
    const std::vector<float> &a = e.session.output(), &b = verifier.output();
    return a.size() == b.size() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
  }

  const Options &options;
  const Program &program;
  const Tokenizer &tokenizer;
  std::mutex mutex; ///< documents, lru, evicted
  std::map<std::string, std::shared_ptr<Entry>> documents;
  std::list<std::string> lru;
  std::set<std::string> evicted;
  int64_t evictions = 0;
  std::mt19937_64 rng{std::random_device{}()};
  std::mutex verifyMutex;
  Evaluator verifier;
};

void reply(httplib::Response &res, int status, const json &body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

/// Runs `handler`, turning errors into JSON 4xx/5xx answers.
template <class Handler> void guarded(httplib::Response &res, Handler handler) {
  try {
    reply(res, 200, handler());
  } catch (const HttpError &e) {
    reply(res, e.status, json{{"error", e.message}});
  } catch (const std::bad_alloc &) {
    reply(res, 503, json{{"error", "out of memory"}});
  } catch (const std::exception &e) {
    reply(res, 500, json{{"error", e.what()}});
  }
}

json parseBody(const httplib::Request &req) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    throw HttpError{400, "the body is not a JSON object"};
  return body;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  Program program;
  if (Status st = loadProgram(o.model, program); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: %s\n", st.error.c_str());
    return 1;
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (Status st = Tokenizer::create(program.tokenizer, tokenizer); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: %s: %s\n", o.model.c_str(),
                 st.error.c_str());
    return 1;
  }
  Server server(o, program, *tokenizer);
  httplib::Server http;
  // A request body holds at most one maximal text, JSON-escaped.
  http.set_payload_max_length(6 * kMaxTextBytes + 4096);
  http.Post("/v1/documents",
            [&](const httplib::Request &req, httplib::Response &res) {
              guarded(res, [&] { return server.create(parseBody(req)); });
            });
  http.Post(R"(/v1/documents/([0-9a-f]+)/edits)",
            [&](const httplib::Request &req, httplib::Response &res) {
              guarded(res, [&] {
                return server.edit(req.matches[1], parseBody(req));
              });
            });
  http.Get(R"(/v1/documents/([0-9a-f]+))",
           [&](const httplib::Request &req, httplib::Response &res) {
             guarded(res, [&] { return server.get(req.matches[1]); });
           });
  http.Delete(R"(/v1/documents/([0-9a-f]+))",
              [&](const httplib::Request &req, httplib::Response &res) {
                guarded(res, [&] {
                  server.remove(req.matches[1]);
                  return json{{"deleted", std::string(req.matches[1])}};
                });
              });
  http.Get("/", [&](const httplib::Request &, httplib::Response &res) {
    res.set_content(kPageHtml, "text/html; charset=utf-8");
  });
  std::string sample = "Type here, or load a sample document.";
  if (!o.sample.empty()) {
    std::ifstream in(o.sample, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || ss.str().size() > kMaxTextBytes) {
      std::fprintf(stderr, "incnn-serve: cannot read %s (at most %zu bytes)\n",
                   o.sample.c_str(), kMaxTextBytes);
      return 1;
    }
    sample = ss.str();
  }
  http.Get("/v1/sample", [&](const httplib::Request &, httplib::Response &res) {
    reply(res, 200, json{{"text", sample}});
  });
  http.Get("/v1/model", [&](const httplib::Request &, httplib::Response &res) {
    guarded(res, [&] { return server.model(); });
  });
  http.Get("/healthz", [&](const httplib::Request &, httplib::Response &res) {
    guarded(res, [&] { return server.health(); });
  });
  http.set_error_handler(
      [](const httplib::Request &req, httplib::Response &res) {
        if (!res.body.empty())
          return;
        std::string error = "no such endpoint";
        if (res.status == 413)
          error = req.get_header_value("Content-Type") ==
                          "application/x-www-form-urlencoded"
                      ? "a form-encoded body is limited to 8 KiB: send "
                        "Content-Type: application/json"
                      : "the request body is too large";
        reply(res, res.status, json{{"error", error}});
      });
  int port = o.port;
  if (port == 0) // any free port: printed below
    port = http.bind_to_any_port(o.host.c_str());
  else if (!http.bind_to_port(o.host.c_str(), port))
    port = -1;
  if (port <= 0) {
    std::fprintf(stderr, "incnn-serve: cannot listen on %s:%d\n",
                 o.host.c_str(), o.port);
    return 1;
  }
  std::printf("incnn-serve: %s on http://%s:%d/ (%zu labels, window %lld)\n",
              o.model.c_str(), o.host.c_str(), port, program.labels.size(),
              (long long)program.maxPositions);
  std::fflush(stdout);
  http.listen_after_bind();
  return 0;
}
