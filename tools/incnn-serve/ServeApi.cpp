//===- ServeApi.cpp - incnn-serve's JSON API, without the transport -------===//
#include "ServeApi.h"
#include "LabelledSpans.h"

#include "incnn/runtime/BoundedJson.h"
#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Serialize.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <malloc.h>
#include <unistd.h>

namespace incnn::serve {

using namespace runtime;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

/// Most byte ranges one answer highlights.
constexpr size_t kMaxHighlights = 4096;

/// A request that fails: its HTTP status and message, and the runtime's
/// status code when the runtime refused it.
struct HttpError {
  int status;
  std::string message;
  const char *code = nullptr;
};

/// Request bodies share the edits file's limits: its line size and nesting,
/// and as many values as a maximal batch of text edits.
constexpr JsonLimits kBodyLimits{kMaxEditLineBytes, kMaxEditJsonDepth,
                                 8 * kMaxEditsPerBatch + 16};

json parseBody(const std::string &text) {
  json body;
  if (Status st = parseBoundedJson(text, kBodyLimits, body); !st.ok())
    throw HttpError{text.size() > kBodyLimits.maxBytes ? 413 : 400,
                    "the body: " + st.error};
  if (!body.is_object())
    throw HttpError{400, "the body must be a JSON object"};
  return body;
}

void onlyKeys(const json &object, std::initializer_list<const char *> keys,
              const std::string &where) {
  for (auto it = object.begin(); it != object.end(); ++it)
    if (std::none_of(keys.begin(), keys.end(),
                     [&](const char *k) { return it.key() == k; }))
      throw HttpError{400, where + "unexpected key '" + it.key() + "'"};
}

std::string textField(const json &object, const char *key,
                      const std::string &where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string())
    throw HttpError{400, where + "needs a string '" + key + "'"};
  const std::string &text = it->get_ref<const std::string &>();
  if (text.size() > kMaxTextBytes)
    throw HttpError{
        413, where + "'" + key + "' has " + std::to_string(text.size()) +
                 " bytes, over the limit of " + std::to_string(kMaxTextBytes)};
  return text;
}

int64_t offsetField(const json &object, const char *key,
                    const std::string &where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer())
    throw HttpError{400, where + "needs an integer '" + key + "'"};
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX))
    throw HttpError{400, where + "'" + key + "' is out of range"};
  return it->get<int64_t>();
}

/// A short, printable rendering of a client-supplied string for messages.
std::string shown(const std::string &s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "'" + out + (s.size() > 64 ? "...'" : "'");
}

/// A refusal before any work: its reason counted in the metrics.
struct Refused : HttpError {
  Refused(int status, std::string message, const char *reason)
      : HttpError{status, std::move(message)}, reason(reason) {}
  const char *reason;
};

double microsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

/// The HTTP answer to a runtime refusal, mapped from its code.
HttpError refusal(const Status &st) {
  int status = 500;
  switch (st.code) {
  case StatusCode::InvalidArgument:
  case StatusCode::OutOfRange:
    status = 400;
    break;
  case StatusCode::OutOfContract:
    status = 422;
    break;
  case StatusCode::ResourceExhausted:
    status = 413;
    break;
  case StatusCode::Interrupted:
    status = 503;
    break;
  case StatusCode::Ok:
  case StatusCode::IO:
  case StatusCode::Internal:
    break;
  }
  return {status, st.error, statusCodeName(st.code)};
}

std::string formatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

std::string mib(int64_t bytes) {
  return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB";
}

} // namespace

bool isDocumentName(const std::string &name) {
  return !name.empty() && name.size() <= 128 && name[0] != '.' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '~' ||
                  c == '-';
         });
}

int64_t residentBytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  long long size = 0, resident = 0;
  int read = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return read == 2 ? resident * int64_t(sysconf(_SC_PAGESIZE)) : 0;
}

int64_t peakBytesPerToken(const Program &program) {
  // The cache with its slack for inserts, plus the most bytes the values a
  // from-scratch run holds at once (each lives from its instruction to its
  // last use), plus two rows of scratch as wide as the widest value.
  size_t n = program.instrs.size();
  std::vector<int64_t> first(program.values.size(), int64_t(n)),
      last(program.values.size(), -1);
  for (size_t i = 0; i < n; ++i) {
    for (int32_t v : program.instrs[i].results)
      first[size_t(v)] = std::min(first[size_t(v)], int64_t(i));
    for (int32_t v : program.instrs[i].operands)
      last[size_t(v)] = int64_t(i);
  }
  int64_t live = 0, widest = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t bytes = 0;
    for (size_t v = 0; v < program.values.size(); ++v) {
      const ValueInfo &info = program.values[v];
      widest = std::max<int64_t>(widest, info.width);
      if (info.perToken && !info.keepAllRows && first[v] <= int64_t(i) &&
          int64_t(i) <= std::max(last[v], first[v]))
        bytes += 4 * int64_t(info.width);
    }
    live = std::max(live, bytes);
  }
  return cacheBytesPerToken(program) * 9 / 8 + live + 8 * widest;
}

/// One live document: its session and text, used by one request at a time.
struct DocumentServer::Entry {
  Entry(const Program &program, const Tokenizer &tokenizer, int threads)
      : session(program, SessionOptions{threads}),
        document(session, tokenizer) {}
  std::mutex mutex;
  Session session;
  Document document;
  std::atomic<int64_t> bytes{0}; ///< cache bytes after the last request
  std::atomic<bool> live{true};  ///< false once deleted or evicted
};

/// Holds one of the server's compute slots for a create or an edit.
class DocumentServer::ComputeSlot {
public:
  ComputeSlot(DocumentServer &s, double seconds) : server(s) {
    std::unique_lock<std::mutex> lock(s.slotMutex_);
    if (!s.slotFree_.wait_for(
            lock, std::chrono::duration<double>(seconds),
            [&] { return s.slotsInUse_ < s.limits_.computeSlots; }))
      throw Refused{503,
                    "the server is busy: every compute slot stayed taken "
                    "for " +
                        formatSeconds(seconds) + "; try again",
                    "busy"};
    ++s.slotsInUse_;
  }
  ~ComputeSlot() {
    {
      std::lock_guard<std::mutex> lock(server.slotMutex_);
      --server.slotsInUse_;
    }
    server.slotFree_.notify_one();
  }

private:
  DocumentServer &server;
};

DocumentServer::DocumentServer(const Program &program,
                               const Tokenizer &tokenizer, ServeLimits limits)
    : program_(program), tokenizer_(tokenizer), limits_(limits) {
  limits_.maxTokens =
      std::min<int64_t>(limits_.maxTokens, program.maxPositions);
  limits_.computeSlots = std::max(1, limits_.computeSlots);
  peakBytesPerToken_ = peakBytesPerToken(program);
  baseline_ = residentBytes();
}

DocumentServer::~DocumentServer() = default;

ApiReply DocumentServer::handle(const ApiRequest &request) {
  auto t0 = Clock::now();
  ApiReply reply;
  std::string route = "other";
  try {
    const std::string &path = request.path, &method = request.method;
    static const std::string docs = "/v1/documents";
    auto allow = [&](const char *allowed) {
      if (method != allowed)
        throw HttpError{405, method.substr(0, 16) + " is not allowed on " +
                                 shown(path) + " (use " + allowed + ")"};
    };
    if (path == docs) {
      route = "create";
      allow("POST");
      reply.body = create(request, parseBody(request.body), "");
    } else if (path.compare(0, docs.size() + 1, docs + "/") == 0) {
      std::string rest = path.substr(docs.size() + 1);
      size_t slash = rest.find('/');
      std::string name = rest.substr(0, slash);
      if (slash != std::string::npos) {
        if (rest.substr(slash) != "/edits")
          throw HttpError{404, "no such endpoint: " + shown(path)};
        route = "edit";
        allow("POST");
        reply.body = edit(name, parseBody(request.body));
      } else if (method == "PUT") {
        route = "put";
        if (!isDocumentName(name))
          throw HttpError{400, "a document name is 1 to 128 of A-Z a-z 0-9 "
                               ". _ ~ - (not starting with '.'), not " +
                                   shown(name)};
        reply.body = create(request, parseBody(request.body), name);
      } else if (method == "DELETE") {
        route = "delete";
        reply.body = remove(name);
      } else {
        route = "get";
        allow("GET");
        reply.body = get(name);
      }
    } else if (path == "/v1/model") {
      route = "model";
      allow("GET");
      reply.body = model();
    } else if (path == "/healthz") {
      route = "healthz";
      allow("GET");
      reply.body = health();
    } else if (path == "/metrics") {
      route = "metrics";
      allow("GET");
      reply.text = renderMetrics();
      reply.contentType = "text/plain; version=0.0.4; charset=utf-8";
    } else {
      throw HttpError{404, "no such endpoint: " + shown(path)};
    }
  } catch (const Refused &e) {
    metrics_.refusal(e.reason);
    reply = {e.status, json{{"error", e.message}}, "", ""};
  } catch (const HttpError &e) {
    reply = {e.status, json{{"error", e.message}}, "", ""};
    if (e.code)
      reply.body["code"] = e.code;
  } catch (const std::bad_alloc &) {
    reply = {503, json{{"error", "out of memory"}}, "", ""};
  } catch (const std::exception &e) {
    reply = {500, json{{"error", e.what()}}, "", ""};
  }
  metrics_.request(route, reply.status,
                   std::chrono::duration<double>(Clock::now() - t0).count());
  return reply;
}

json DocumentServer::create(const ApiRequest &request, const json &body,
                            std::string name) {
  onlyKeys(body, {"text"}, "");
  std::string text = textField(body, "text", "");
  // Count the tokens first: the budget refuses a long text before the
  // expensive part.
  std::vector<int32_t> ids;
  if (Status st = tokenizer_.encode(text, ids); !st.ok())
    throw refusal(st);
  if (int64_t(ids.size()) > limits_.maxTokens)
    throw Refused{413,
                  "the text has " + std::to_string(ids.size()) +
                      " tokens, over this server's limit of " +
                      std::to_string(limits_.maxTokens) +
                      " per document (--max-tokens)",
                  "max_tokens"};
  int64_t peak = int64_t(ids.size()) * peakBytesPerToken_;
  if (limits_.memoryBudget > 0 && peak > limits_.memoryBudget - baseline_)
    throw Refused{413,
                  "the text has " + std::to_string(ids.size()) +
                      " tokens, which need up to " + mib(peak) +
                      " to evaluate: over this server's memory budget "
                      "(--memory-budget)",
                  "memory_budget"};
  ComputeSlot slot(*this, limits_.requestSeconds);
  enforceBudget("", peak);
  auto entry = std::make_shared<Entry>(program_, tokenizer_, limits_.threads);
  auto t0 = Clock::now();
  auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(
               std::chrono::duration<double>(limits_.requestSeconds));
  bool late = false;
  entry->session.setInterruptCheck([&] {
    late = Clock::now() > deadline;
    return late || (request.clientGone && request.clientGone());
  });
  Status st = entry->document.reset(text);
  entry->session.setInterruptCheck(nullptr);
  if (st.interrupted())
    throw Refused{late ? 503 : 499,
                  late ? "the evaluation took longer than this server's "
                         "limit of " +
                             formatSeconds(limits_.requestSeconds) +
                             " (--request-timeout); it was abandoned"
                       : "the client went away; the evaluation was "
                         "abandoned",
                  late ? "request_timeout" : "client_gone"};
  if (!st.ok())
    throw refusal(st);
  double us = microsSince(t0);
  metrics_.update(us * 1e-6);
  entry->bytes = entry->session.cacheBytes();
  std::string id = name.empty() ? newId() : name;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto old = documents_.find(id); old != documents_.end())
      old->second->live = false; // replaced: an edit waiting on it answers 404
    documents_[id] = entry;
    evicted_.erase(id);
    touch(id);
  }
  enforceBudget(id);
  json r = describe(*entry);
  r["id"] = id;
  r["stats"] = stats(*entry, us, 0, {});
  return r;
}

json DocumentServer::edit(const std::string &id, const json &body) {
  std::shared_ptr<Entry> entry = find(id);
  onlyKeys(body, {"edits", "verify"}, "");
  auto edits = body.find("edits");
  if (edits == body.end() || !edits->is_array())
    throw HttpError{400, "the body needs an 'edits' array"};
  if (edits->size() > kMaxEditsPerBatch)
    throw HttpError{413, "more than " + std::to_string(kMaxEditsPerBatch) +
                             " edits in one request"};
  bool verify = false;
  if (auto v = body.find("verify"); v != body.end()) {
    if (!v->is_boolean())
      throw HttpError{400, "'verify' must be true or false"};
    verify = v->get<bool>();
  }
  std::vector<TextEdit> textEdits;
  for (size_t i = 0; i < edits->size(); ++i) {
    const json &e = (*edits)[i];
    std::string where = "edit " + std::to_string(i) + ": ";
    if (!e.is_object())
      throw HttpError{400, where + "an edit is an object {start, end, text}"};
    onlyKeys(e, {"start", "end", "text"}, where);
    textEdits.push_back({offsetField(e, "start", where),
                         offsetField(e, "end", where),
                         textField(e, "text", where)});
  }
  ComputeSlot slot(*this, limits_.requestSeconds);
  std::lock_guard<std::mutex> lock(entry->mutex);
  if (!entry->live)
    throw HttpError{404, "document " + id +
                             " was deleted or evicted while "
                             "this edit waited"};
  auto t0 = Clock::now();
  Document::Plan plan;
  if (Status st = entry->document.plan(textEdits, plan); !st.ok())
    throw refusal(st);
  if (int64_t(plan.tokens.size()) > limits_.maxTokens)
    throw Refused{
        413,
        "the edited text would have " + std::to_string(plan.tokens.size()) +
            " tokens, over this server's limit of " +
            std::to_string(limits_.maxTokens) + " per document (--max-tokens)",
        "max_tokens"};
  std::vector<TokenEdit> tokenEdits = plan.tokenEdits;
  double tokenizeUs = plan.tokenizeMicros;
  if (Status st = entry->document.commit(std::move(plan)); !st.ok())
    throw refusal(st);
  double us = microsSince(t0);
  metrics_.tokenize(tokenizeUs * 1e-6);
  metrics_.update(entry->session.stats().micros * 1e-6);
  entry->bytes = entry->session.cacheBytes();
  json r =
      describe(*entry, &textEdits, &entry->session.stats().changedOutputRows);
  r["stats"] = stats(*entry, us, tokenizeUs, tokenEdits);
  if (verify) {
    bool exact = matchesFromScratch(*entry);
    metrics_.verify(exact);
    r["exact"] = exact;
  }
  {
    std::lock_guard<std::mutex> registry(mutex_);
    auto it = documents_.find(id);
    if (it != documents_.end() && it->second == entry)
      touch(id);
  }
  enforceBudget(id);
  return r;
}

json DocumentServer::get(const std::string &id) {
  std::shared_ptr<Entry> entry = find(id);
  std::lock_guard<std::mutex> lock(entry->mutex);
  json r = describe(*entry);
  r["text_bytes"] = entry->document.text().size();
  r["tokens"] = entry->document.allTokens().size();
  return r;
}

json DocumentServer::remove(const std::string &id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = documents_.find(id);
  if (it == documents_.end())
    throw HttpError{404, evicted_.count(id)
                             ? "document " + id + " was evicted already"
                             : "no document " + shown(id)};
  it->second->live = false;
  documents_.erase(it);
  lru_.remove(id);
  return json{{"deleted", id}};
}

json DocumentServer::model() const {
  json r;
  r["labels"] = program_.labels;
  r["task"] = taskName(program_.task);
  r["vocab_size"] = program_.vocabSize;
  r["window"] = program_.maxPositions;
  r["max_tokens"] = limits_.maxTokens;
  r["cache_bytes_per_token"] = cacheBytesPerToken(program_);
  r["max_text_bytes"] = kMaxTextBytes;
  r["max_edits"] = kMaxEditsPerBatch;
  return r;
}

json DocumentServer::health() {
  json r;
  r["ok"] = true;
  r["cache_bytes"] = cacheBytes();
  r["resident_bytes"] = residentBytes();
  r["memory_budget"] = limits_.memoryBudget;
  std::lock_guard<std::mutex> lock(mutex_);
  r["documents"] = documents_.size();
  r["evicted"] = evictions_;
  return r;
}

std::shared_ptr<DocumentServer::Entry>
DocumentServer::find(const std::string &id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = documents_.find(id);
  if (it != documents_.end())
    return it->second;
  if (evicted_.count(id))
    throw HttpError{404, "document " + id +
                             " was evicted (the memory budget or document "
                             "limit was reached): create it again"};
  throw HttpError{404, "no document " + shown(id)};
}

std::string DocumentServer::newId() {
  static const char digits[] = "0123456789abcdef";
  std::lock_guard<std::mutex> lock(mutex_);
  std::string id;
  do {
    id.clear();
    for (int i = 0; i < 16; ++i)
      id += digits[rng_() % 16];
  } while (documents_.count(id) || evicted_.count(id));
  return id;
}

void DocumentServer::touch(const std::string &id) {
  lru_.remove(id);
  lru_.push_front(id);
}

void DocumentServer::forget(const std::string &id) {
  auto it = documents_.find(id);
  it->second->live = false;
  documents_.erase(it);
  lru_.remove(id);
  if (evicted_.insert(id).second)
    evictedOrder_.push_back(id);
  while (int64_t(evictedOrder_.size()) > limits_.rememberEvicted) {
    evicted_.erase(evictedOrder_.front());
    evictedOrder_.pop_front();
  }
  ++evictions_;
  metrics_.eviction();
}

std::string DocumentServer::renderMetrics() {
  int64_t documents;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    documents = int64_t(documents_.size());
  }
  return metrics_.render(
      {{"incnn_documents", "Documents kept live.", double(documents)},
       {"incnn_cache_bytes", "Bytes the documents' sessions keep.",
        double(cacheBytes())},
       {"incnn_resident_bytes", "The process's resident memory.",
        double(residentBytes())},
       {"incnn_memory_budget_bytes", "--memory-budget (0: none).",
        double(limits_.memoryBudget)},
       {"incnn_max_tokens", "--max-tokens: tokens of one document.",
        double(limits_.maxTokens)}});
}

int64_t DocumentServer::cacheBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t bytes = 0;
  for (const auto &[id, e] : documents_)
    bytes += e->bytes;
  return bytes;
}

void DocumentServer::enforceBudget(const std::string &keep, int64_t reserve) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto victim = [&]() -> std::string {
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it)
      if (*it != keep)
        return *it;
    return "";
  };
  while (int64_t(documents_.size()) > limits_.maxDocuments) {
    std::string v = victim();
    if (v.empty())
      break;
    forget(v);
  }
  if (limits_.memoryBudget <= 0)
    return;
  // Within the budget (the common case): one read of /proc, nothing else.
  // Over it: first give freed memory back to the system, then evict.
  bool trimmed = false;
  for (;;) {
    int64_t used = 0;
    if (limits_.measureMemory) {
      used = residentBytes();
    } else {
      for (const auto &[id, e] : documents_)
        used += e->bytes;
    }
    if (used + reserve <= limits_.memoryBudget)
      return;
    if (limits_.measureMemory && !trimmed) {
      lock.unlock();
      malloc_trim(0);
      lock.lock();
      trimmed = true;
      continue;
    }
    std::string v = victim();
    if (v.empty())
      return;
    forget(v);
    trimmed = false;
  }
}

namespace {

json spansToJson(const std::vector<LabelledSpan> &spans,
                 const std::vector<std::string> &labels) {
  json out = json::array();
  for (const LabelledSpan &s : spans)
    out.push_back(
        {s.begin, s.end,
         s.label < labels.size() ? labels[s.label] : std::to_string(s.label)});
  return out;
}

/// The bytes of the final text that `edits` wrote (each edit applies to the
/// text the ones before it left), as one range [begin, end].
std::pair<int64_t, int64_t> writtenBytes(const std::vector<TextEdit> &edits) {
  int64_t begin = INT64_MAX, end = -1;
  for (const TextEdit &t : edits) {
    int64_t delta = int64_t(t.text.size()) - (t.end - t.start);
    if (end >= 0) { // move what earlier edits wrote
      if (begin >= t.end)
        begin += delta;
      else if (begin > t.start)
        begin = t.start;
      if (end >= t.end)
        end += delta;
      else if (end > t.start)
        end = t.start + int64_t(t.text.size());
    }
    begin = std::min(begin, t.start);
    end = std::max(end, t.start + int64_t(t.text.size()));
  }
  return {begin, end};
}

} // namespace

json DocumentServer::describe(Entry &e, const std::vector<TextEdit> *edits,
                              const std::vector<int64_t> *changedRows) const {
  json r;
  const std::vector<float> &out = e.session.output();
  if (program_.task == TaskKind::TokenClassifier) {
    // The spans a client underlines: all of them, or after an edit those
    // touching what changed (docs/serve.md).
    TokenLabels labels(e.document, e.session, program_.labels.size());
    r["labels"] = program_.labels;
    if (!edits) {
      r["output"] = outputToJson(e.session);
      r["spans"] = spansToJson(labels.all(), program_.labels);
      return r;
    }
    auto [begin, end] = writtenBytes(*edits);
    for (int64_t row : *changedRows) {
      int64_t b = 0, en = 0;
      e.document.tokenBytes(row, b, en);
      begin = std::min(begin, b);
      end = std::max(end, en);
    }
    if (end < 0)
      return r; // nothing changed
    std::vector<LabelledSpan> spans = labels.touching(begin, end);
    r["changed_rows"] = *changedRows;
    r["spans_range"] = {begin, end};
    r["spans"] = spansToJson(spans, program_.labels);
    return r;
  }
  r["output"] = floatsToJson(out);
  if (program_.task == TaskKind::Classifier && !out.empty()) {
    size_t best = argmaxOf(out.data(), out.size());
    r["prediction"] = best < program_.labels.size()
                          ? program_.labels[best]
                          : "LABEL_" + std::to_string(best);
    r["labels"] = program_.labels;
  }
  return r;
}

json DocumentServer::stats(Entry &e, double us, double tokenizeUs,
                           const std::vector<TokenEdit> &edits) const {
  const EditStats &s = e.session.stats();
  // The update's statistics (docs/json.md); "us" here is the whole request,
  // the update's own time is "update_us".
  json r = statsToJson(s);
  r["update_us"] = r["us"];
  r["us"] = us;
  r["tokenize_us"] = tokenizeUs;
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
  r["cache_bytes"] = e.bytes.load();
  return r;
}

bool DocumentServer::matchesFromScratch(Entry &e) {
  return e.document.verifyTokens().ok() &&
         compareWithFromScratch(e.session, limits_.threads).ok();
}

} // namespace incnn::serve
