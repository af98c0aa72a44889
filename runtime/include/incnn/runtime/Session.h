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

#include "incnn/runtime/Program.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace incnn::runtime {

/// One token-level edit. Positions refer to the sequence as it is when the
/// edit applies (after the earlier edits of the same batch).
struct TokenEdit {
  enum class Kind { Replace, Insert, Delete };
  Kind kind = Kind::Replace;
  int64_t at = 0;
  std::vector<int32_t> tokens; ///< replace / insert
  int64_t count = 0;           ///< delete

  static TokenEdit replace(int64_t at, std::vector<int32_t> tokens);
  static TokenEdit insert(int64_t at, std::vector<int32_t> tokens);
  static TokenEdit erase(int64_t at, int64_t count);
};

/// Statistics of the last reset() or apply().
struct EditStats {
  uint64_t macs = 0;     ///< multiply-accumulates performed
  uint64_t macsFull = 0; ///< MACs of a from-scratch run on the new tokens
  /// Per layer (attention op): rows recomputed in full by the layer's
  /// token-local work and attention.
  std::vector<int64_t> dirtyRows;
  /// Per layer: other rows whose attention got delta updates.
  std::vector<int64_t> updatedRows;
  /// Per VQ op: rows whose codes changed.
  std::vector<int64_t> codeFlips;
  /// Rows whose attention moved so little that a margin certificate proved
  /// their VQ codes unchanged, skipping the layers between (all layers).
  int64_t certifiedRows = 0;
  /// Rows some attention layer recomputed in full (sorted; empty from
  /// scratch, where every row is).
  std::vector<int64_t> recomputedRows;
  double micros = 0; ///< wall time of the update
  int64_t numTokens = 0;
};

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

  /// Applies a batch of edits incrementally. A rejected batch (bad position,
  /// bad token id, empty or too long result, or activations outside the
  /// exactness contract: Status::outsideContract) leaves the session
  /// unchanged.
  Status apply(const std::vector<TokenEdit> &edits);
  Status apply(const TokenEdit &edit) { return apply(std::vector{edit}); }

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
  /// evaluation stops and reset()/apply() return Status::interrupted with the
  /// session as it was before (an interrupted apply() restores the old state
  /// by a from-scratch run). Empty: never interrupted.
  void setInterruptCheck(std::function<bool()> check);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_SESSION_H
