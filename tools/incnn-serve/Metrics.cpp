//===- Metrics.cpp - incnn-serve's counters and histograms ----------------===//
#include "Metrics.h"

#include <cstdio>
#include <tuple>

namespace incnn::serve {

namespace {

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

void header(std::string &out, const char *name, const char *type,
            const char *help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " +
         type + "\n";
}

} // namespace

void Histogram::observe(double seconds) {
  size_t b = 0;
  while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b])
    ++b;
  ++counts[b];
  sum += seconds;
  ++count;
}

void Histogram::render(std::string &out, const std::string &name,
                       const std::string &labels) const {
  std::string sep = labels.empty() ? "" : labels + ",";
  uint64_t cumulative = 0;
  for (size_t b = 0; b <= kLatencyBuckets.size(); ++b) {
    cumulative += counts[b];
    std::string le =
        b < kLatencyBuckets.size() ? number(kLatencyBuckets[b]) : "+Inf";
    out += name + "_bucket{" + sep + "le=\"" + le + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + braces + " " + number(sum) + "\n";
  out += name + "_count" + braces + " " + std::to_string(count) + "\n";
}

void Metrics::request(const std::string &route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  ++requests[{route, status}];
  requestSeconds[route].observe(seconds);
}

void Metrics::update(double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  updateSeconds.observe(seconds);
}

void Metrics::tokenize(double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  tokenizeSeconds.observe(seconds);
}

void Metrics::refusal(const std::string &reason) {
  std::lock_guard<std::mutex> lock(mutex);
  ++refusals[reason];
}

void Metrics::eviction() {
  std::lock_guard<std::mutex> lock(mutex);
  ++evictions;
}

void Metrics::verify(bool exact) {
  std::lock_guard<std::mutex> lock(mutex);
  ++verifies;
  verifyFailures += !exact;
}

std::string Metrics::render(
    std::initializer_list<std::tuple<const char *, const char *, double>>
        gauges) const {
  std::lock_guard<std::mutex> lock(mutex);
  std::string out;
  header(out, "incnn_requests_total", "counter",
         "Requests answered, by route and HTTP status.");
  for (const auto &[key, n] : requests)
    out += "incnn_requests_total{route=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  header(out, "incnn_request_seconds", "histogram",
         "Time from a request's arrival to its answer, by route.");
  for (const auto &[route, h] : requestSeconds)
    h.render(out, "incnn_request_seconds", "route=\"" + route + "\"");
  header(out, "incnn_update_seconds", "histogram",
         "Incremental session updates (edits) and from-scratch evaluations "
         "(creates).");
  updateSeconds.render(out, "incnn_update_seconds", "");
  header(out, "incnn_tokenize_seconds", "histogram",
         "Incremental tokenization of an edit batch.");
  tokenizeSeconds.render(out, "incnn_tokenize_seconds", "");
  header(out, "incnn_refusals_total", "counter",
         "Requests refused before any work, by reason.");
  for (const auto &[reason, n] : refusals)
    out += "incnn_refusals_total{reason=\"" + reason + "\"} " +
           std::to_string(n) + "\n";
  header(out, "incnn_evictions_total", "counter",
         "Documents evicted for the memory budget or the document limit.");
  out += "incnn_evictions_total " + std::to_string(evictions) + "\n";
  header(out, "incnn_verifies_total", "counter",
         "Edits verified against a from-scratch run.");
  out += "incnn_verifies_total " + std::to_string(verifies) + "\n";
  header(out, "incnn_verify_failures_total", "counter",
         "Verified edits whose output differed from a from-scratch run.");
  out += "incnn_verify_failures_total " + std::to_string(verifyFailures) + "\n";
  for (const auto &[name, help, value] : gauges) {
    header(out, name, "gauge", help);
    out += std::string(name) + " " + number(value) + "\n";
  }
  return out;
}

} // namespace incnn::serve
