//===- Edits.h - edits of a document and what an update cost ---*- C++ -*-===//
//
// The vocabulary every interface shares: token edits (Session), text edits
// (Document, edits files, incnn-serve) and the statistics of an update.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_EDITS_H
#define INCNN_RUNTIME_EDITS_H

#include <cstdint>
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

/// Where an attention update's time went (EditStats::attentionMicros).
struct AttentionMicros {
  /// Planning: the changed keys' terms, the candidate rows, deferral, and
  /// the choice between delta terms and a recompute of the layer.
  double plan = 0;
  /// The delta terms of the candidate rows, with the certificates of the
  /// rows they updated.
  double deltaTerms = 0;
  /// Rows recomputed in full (new queries, shifts that moved), and the
  /// outputs of the rows not certified; or the whole layer, where delta
  /// terms would cost more.
  double fullRows = 0;
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
  /// Rows whose attention update was deferred: a bound proved their VQ codes
  /// unchanged without updating them (all layers).
  int64_t deferredRows = 0;
  /// Bytes of attention accumulators (softmax sums) the update rewrote, each
  /// read and written once: the memory traffic an exact update cannot skip.
  uint64_t stateBytes = 0;
  /// Rows some attention layer recomputed in full (sorted; empty from
  /// scratch, where every row is).
  std::vector<int64_t> recomputedRows;
  /// Rows of a per-token output (a token classifier's logits) whose token is
  /// new or different or whose values changed, bit for bit (sorted, new row
  /// numbers; every row from scratch; empty for a vector output). Other rows
  /// kept their token and output (and moved with inserts and deletes).
  std::vector<int64_t> changedOutputRows;
  double micros = 0; ///< wall time of the update
  /// Wall time of each step of the program (Program::steps order), µs; the
  /// rest of `micros` is planning the edit, saving the state a rejected edit
  /// restores, moving slots, and starting and finishing the update.
  std::vector<double> stepMicros;
  /// Per layer (attention op): its update's parts (empty from scratch).
  std::vector<AttentionMicros> attentionMicros;
  int64_t numTokens = 0;
};

/// One byte-range replacement of a document's text.
struct TextEdit {
  int64_t start = 0, end = 0;
  std::string text;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_EDITS_H
