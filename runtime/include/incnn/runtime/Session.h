//===- Session.h - incremental evaluation of one document --------*- C++
//-*-===//
//
// A Session holds one document's state: its tokens and the cached rows the
// program's cache plan keeps. After an edit it updates the output at a cost
// proportional to what changed, and the result is bit-for-bit what a
// from-scratch evaluation (Evaluator) of the edited tokens gives.
//
// Threading: a Session is used by one thread at a time; it runs kernels on
// its own thread pool. Several Sessions may share one Program.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_SESSION_H
#define INCNN_RUNTIME_SESSION_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace incnn::runtime {

struct SessionOptions {
  /// Threads for kernels, the caller included; 0 = all hardware threads.
  int numThreads = 0;
  /// Certify unchanged VQ codes from cached margins where the change in a
  /// row's attention output is provably too small to flip them.
  bool vqCertificates = true;
};

/// Applies `edits` to `tokens` (validating every position and token id).
/// On error `tokens` is unchanged and the message names the edit.
Status applyEditsToTokens(const Program &program, std::vector<int32_t> &tokens,
                          const std::vector<TokenEdit> &edits);

class Session {
public:
  /// `program` must be verified and outlive the session.
  explicit Session(const Program &program, SessionOptions options = {});
  ~Session();
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  /// Evaluates `tokens` from scratch and caches what the plan keeps. A
  /// refused document (bad tokens, or outside the contract) keeps the old one.
  Status reset(const std::vector<int32_t> &tokens);

  /// Applies a batch of edits incrementally, validating it once. A rejected
  /// batch leaves the session unchanged: InvalidArgument (bad token id,
  /// empty edit or result), OutOfRange (bad position, result longer than
  /// the context), OutOfContract (activations outside the exactness
  /// contract), Interrupted.
  Status apply(const std::vector<TokenEdit> &edits);
  Status apply(const TokenEdit &edit) { return apply(std::vector{edit}); }

  /// False before the first successful reset() and after an update that ran
  /// out of memory (Status code ResourceExhausted).
  bool hasDocument() const;
  const std::vector<float> &output() const;
  const std::vector<int32_t> &tokens() const;
  const EditStats &stats() const;
  /// Bytes of cached state (rows, attention accumulators, codes).
  int64_t cacheBytes() const;
  /// Number of attention layers and VQ ops (sizes of the stats vectors).
  int64_t numLayers() const;
  int64_t numVQ() const;

  const Program &program() const;

  /// A check the engine calls between steps; when it returns true the
  /// evaluation stops and reset()/apply() return StatusCode::Interrupted with
  /// the session as it was before (an interrupted apply() restores the old
  /// state by a from-scratch run). Empty: never interrupted.
  void setInterruptCheck(std::function<bool()> check);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_SESSION_H
