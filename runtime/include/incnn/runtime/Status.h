//===- Status.h - the result of a fallible runtime call ---------*- C++ -*-===//
//
// Every fallible call returns a Status: a code that callers branch on (the C
// API, Python exceptions and HTTP statuses map from it) and a message for
// people. A call that fails leaves its object exactly as it was.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STATUS_H
#define INCNN_RUNTIME_STATUS_H

#include <string>

namespace incnn::runtime {

enum class StatusCode {
  Ok = 0,
  /// Malformed input: a bad token, edit, text, file or option.
  InvalidArgument,
  /// Well formed but past a bound of the current state or the program: an
  /// offset past the end, a sequence longer than the window allows.
  OutOfRange,
  /// Well formed, but the activations leave the exactness contract
  /// (docs/exactness.md).
  OutOfContract,
  /// A memory or size budget was exceeded, or an allocation failed.
  ResourceExhausted,
  /// A file could not be opened, read, mapped or written.
  IO,
  /// The caller's interrupt check stopped the evaluation.
  Interrupted,
  /// The runtime disagrees with itself (an incremental result differs from
  /// a from-scratch run): a bug to report.
  Internal,
};

/// "invalid_argument", "out_of_range", ... (stable, for JSON and logs).
const char *statusCodeName(StatusCode code);

struct Status {
  StatusCode code = StatusCode::Ok;
  std::string error;

  bool ok() const { return code == StatusCode::Ok; }
  bool is(StatusCode c) const { return code == c; }
  /// The input leaves the exactness contract; the session is unchanged.
  bool outsideContract() const { return code == StatusCode::OutOfContract; }
  /// The caller's interrupt check stopped the call; the session is unchanged.
  bool interrupted() const { return code == StatusCode::Interrupted; }

  static Status success() { return {}; }
  static Status make(StatusCode code, std::string message) {
    return {code, std::move(message)};
  }
  static Status invalidArgument(std::string message) {
    return make(StatusCode::InvalidArgument, std::move(message));
  }
  static Status outOfRange(std::string message) {
    return make(StatusCode::OutOfRange, std::move(message));
  }
  static Status breach(std::string message) {
    return make(StatusCode::OutOfContract, std::move(message));
  }
  static Status exhausted(std::string message) {
    return make(StatusCode::ResourceExhausted, std::move(message));
  }
  static Status ioError(std::string message) {
    return make(StatusCode::IO, std::move(message));
  }
  static Status interruption(std::string message) {
    return make(StatusCode::Interrupted, std::move(message));
  }
  static Status internal(std::string message) {
    return make(StatusCode::Internal, std::move(message));
  }
  /// The same code, the message prefixed with `context`.
  Status within(const std::string &context) const {
    return ok() ? *this : make(code, context + error);
  }
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STATUS_H
