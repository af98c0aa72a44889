//===- ServeApi.h - incnn-serve's JSON API, without the transport ---------===//
//
// The documents a server keeps live and the requests on them (docs/serve.md):
// routing, body parsing under limits, the per-document lock, LRU eviction by
// count and by the process's measured memory, per-request token and time
// budgets. The HTTP transport (HttpFront.h) and the fuzzer
// (fuzz/ServeApiFuzz.cpp) both drive it through handle().
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_TOOLS_SERVE_SERVEAPI_H
#define INCNN_TOOLS_SERVE_SERVEAPI_H

#include "Metrics.h"

#include "incnn/runtime/Document.h"
#include "incnn/runtime/Runtime.h"

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>

namespace incnn::serve {

struct ServeLimits {
  int threads = 1;                ///< kernel threads per request
  int64_t maxDocuments = 64;      ///< documents kept live
  int64_t memoryBudget = 0;       ///< bytes of process memory; 0: no budget
  bool measureMemory = true;      ///< budget the measured RSS, not cache bytes
  int64_t maxTokens = 16384;      ///< tokens of one document
  double requestSeconds = 30;     ///< a create's evaluation, then 503
  int computeSlots = 2;           ///< creates and edits computing at once
  int64_t rememberEvicted = 4096; ///< evicted ids that answer "evicted"
};

struct ApiRequest {
  std::string method, path, body;
  /// True once the client has gone away: its create is abandoned.
  std::function<bool()> clientGone;
};

struct ApiReply {
  int status = 200;
  nlohmann::json body;
  /// Set for answers that are not JSON (GET /metrics): sent as is.
  std::string text, contentType;
};

/// True for names a client may give a document (PUT /v1/documents/NAME):
/// 1 to 128 of [A-Za-z0-9._~-], not starting with '.'.
bool isDocumentName(const std::string &name);

/// The process's resident memory in bytes (0 where it cannot be read).
int64_t residentBytes();

/// Upper bound on the memory a document needs per token while it is
/// evaluated from scratch: its cache plus every value of its rows alive at
/// once.
int64_t peakBytesPerToken(const runtime::Program &program);

class DocumentServer {
public:
  /// `program` and `tokenizer` must outlive the server.
  DocumentServer(const runtime::Program &program,
                 const runtime::Tokenizer &tokenizer, ServeLimits limits);
  ~DocumentServer();

  /// Answers one request; never throws. A request that fails changes
  /// nothing and answers a 4xx/5xx {"error": ...}.
  ApiReply handle(const ApiRequest &request);

  const ServeLimits &limits() const { return limits_; }
  Metrics &metrics() { return metrics_; }

private:
  struct Entry;

  /// Evaluates a new document (POST: a fresh id; PUT: the client's name,
  /// replacing any document of that name).
  nlohmann::json create(const ApiRequest &request, const nlohmann::json &body,
                        std::string name);
  nlohmann::json edit(const std::string &id, const nlohmann::json &body);
  nlohmann::json get(const std::string &id);
  nlohmann::json remove(const std::string &id);
  nlohmann::json model() const;
  nlohmann::json health();
  std::string renderMetrics();

  std::shared_ptr<Entry> find(const std::string &id);
  std::string newId();
  void touch(const std::string &id);
  void forget(const std::string &id);
  /// Evicts least recently used documents other than `keep` while there are
  /// too many, or while memory in use plus `reserve` bytes exceeds the
  /// budget.
  void enforceBudget(const std::string &keep, int64_t reserve = 0);
  int64_t cacheBytes() const;
  /// The output; a token classifier's labelled spans, all of them or, after
  /// `edits`, those a client must replace.
  nlohmann::json
  describe(Entry &e, const std::vector<runtime::TextEdit> *edits = nullptr,
           const std::vector<int64_t> *changedRows = nullptr) const;
  nlohmann::json stats(Entry &e, double us, double tokenizeUs,
                       const std::vector<runtime::TokenEdit> &edits) const;
  bool matchesFromScratch(Entry &e);

  const runtime::Program &program_;
  const runtime::Tokenizer &tokenizer_;
  ServeLimits limits_;
  int64_t baseline_ = 0; ///< resident bytes before any document

  mutable std::mutex mutex_; ///< the fields below
  std::map<std::string, std::shared_ptr<Entry>> documents_;
  std::list<std::string> lru_; ///< most recent first
  std::set<std::string> evicted_;
  std::deque<std::string> evictedOrder_;
  int64_t evictions_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};

  /// Creates and edits computing at once (limits_.computeSlots).
  std::mutex slotMutex_;
  std::condition_variable slotFree_;
  int slotsInUse_ = 0;
  class ComputeSlot;

  int64_t peakBytesPerToken_ = 0;
  Metrics metrics_;
};

} // namespace incnn::serve

#endif // INCNN_TOOLS_SERVE_SERVEAPI_H
