//===- Metrics.h - incnn-serve's counters and histograms ------------------===//
//
// What GET /metrics exposes in Prometheus' text format (version 0.0.4):
// requests by route and status with their latency, update and tokenization
// latency histograms, evictions, refusals by reason and failed verifies.
// Gauges (documents, cache and resident bytes) are added by the server when
// it renders. Every method is thread-safe.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_TOOLS_SERVE_METRICS_H
#define INCNN_TOOLS_SERVE_METRICS_H

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace incnn::serve {

/// Cumulative latency buckets in seconds (a +Inf bucket follows).
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};

class Histogram {
public:
  void observe(double seconds);
  /// `name`_bucket/_sum/_count lines, with `labels` (`route="edit"`) if any.
  void render(std::string &out, const std::string &name,
              const std::string &labels) const;

private:
  std::array<uint64_t, kLatencyBuckets.size() + 1> counts{};
  double sum = 0;
  uint64_t count = 0;
};

class Metrics {
public:
  void request(const std::string &route, int status, double seconds);
  void update(double seconds);
  void tokenize(double seconds);
  void refusal(const std::string &reason);
  void eviction();
  void verify(bool exact);

  /// Every metric, then the gauges given as (name, help, value).
  std::string
  render(std::initializer_list<std::tuple<const char *, const char *, double>>
             gauges) const;

private:
  mutable std::mutex mutex;
  std::map<std::pair<std::string, int>, uint64_t> requests;
  std::map<std::string, Histogram> requestSeconds;
  Histogram updateSeconds, tokenizeSeconds;
  std::map<std::string, uint64_t> refusals;
  uint64_t evictions = 0, verifies = 0, verifyFailures = 0;
};

} // namespace incnn::serve

#endif // INCNN_TOOLS_SERVE_METRICS_H
