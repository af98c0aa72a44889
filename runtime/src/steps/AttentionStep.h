//===- AttentionStep.h - the attention_update step's plan ------*- C++ -*-===//
//
// What the phases of the attention_update step share (AttentionUpdate.cpp):
// the attention and its values, the changed keys' terms and the plan of an
// edit; AttentionDefer.cpp defers certified rows.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_ATTENTIONSTEP_H
#define INCNN_RUNTIME_STEPS_ATTENTIONSTEP_H

#include "../RowOps.h"
#include "StepContext.h"

#include <unordered_map>
#include <utility>
#include <vector>

namespace incnn::runtime {

/// One key's rotated key row and value row, at its position.
struct Term {
  int64_t position; ///< in old coordinates for old terms, new for new
  std::vector<float> kRot;
  std::vector<double> v; ///< widened once for every row it reaches
};

/// The attention of one step and the values it reads.
struct AttentionStep {
  StepContext &ctx;
  const Step &s;
  const Program &p;
  size_t index;
  const Instr &in;
  exact::AttentionShape shape;
  int64_t n, qw, kvw, hd;
  const ValueStore &q, &k, &v;
  exact::AttentionState &state;
  const std::vector<int32_t> &slotOf; ///< state rows

  AttentionStep(StepContext &ctx, const Step &s)
      : ctx(ctx), s(s), p(ctx.program), index(size_t(s.instr)),
        in(p.instrs[index]), shape(attentionShape(p, in)), n(ctx.numTokens()),
        qw(shape.queryWidth()), kvw(shape.kvWidth()), hd(shape.headDim),
        q(ctx.value(in.operands[0])), k(ctx.value(in.operands[1])),
        v(ctx.value(in.operands[2])), state(ctx.attention(index)),
        slotOf(ctx.slotOf()) {}

  /// Row `row` attends key `key` (positions in one coordinate system).
  bool inWindow(int64_t key, int64_t row) const {
    if (shape.causal && key > row)
      return false;
    int64_t W = shape.window;
    return W == 0 || (row - key < W && key - row < W);
  }
  /// Counts `rows` rows of accumulators rewritten (EditStats::stateBytes).
  void countRewritten(int64_t rows) const {
    ctx.stats.stateBytes += uint64_t(rows) * uint64_t(state.bytesPerRow());
  }
  const float *oldRow(const ValueStore &store, int64_t r) const {
    return ctx.oldRow(store, r);
  }
  Term makeTerm(int64_t position, const float *kRow, const float *vRow) const {
    Term t;
    t.position = position;
    t.kRot.assign(kRow, kRow + kvw);
    exact::rotateRow(t.kRot.data(), shape.numKvHeads, hd, shape.ropeTheta,
                     position);
    t.v.assign(vRow, vRow + kvw);
    return t;
  }
};

/// A row's own edge terms: (+1, key gained) or (-1, key lost).
using EdgeTerms =
    std::unordered_map<int64_t, std::vector<std::pair<int, Term>>>;

/// What an edit asks of the attention's rows.
struct DeltaPlan {
  std::vector<Term> oldTerms, newTerms; ///< changed keys: before, after
  EdgeTerms edgeTerms;                  ///< windows: per kept row
  std::vector<char> reach;              ///< windows: rows a term may reach
  /// Per row: 1 recomputed (new query or new row), 2 its shift moved.
  std::vector<char> full;
  /// Per row: 1 delta-updated, 3 updated and certified.
  std::vector<char> updated;
  /// Kept rows with an unchanged query that attend to some changed key.
  std::vector<int64_t> candidates;
  /// Per row: 1 deferred (its codes proven unchanged, its update skipped).
  std::vector<char> deferred;
};

/// Defers the candidates of `d` whose codes the certificate proves unchanged
/// under every term of the edit, without touching their accumulators: they
/// leave the candidates, and the terms that reached them wait in the
/// certificate (the rows are stale). AttentionDefer.cpp.
void deferCandidates(const AttentionStep &a, const EditPlan &plan, DeltaPlan &d,
                     Certificate &cert);

/// Stale lanes of a block of up to kTermBlock rows (lane l: row rows[l],
/// state row stateRows[l], rotated queries qT as for applyTermsToBlock)
/// apply their pending terms, oldest first; a lane whose shift would move
/// gets ok[l] = false. Returns the (row, term) pairs applied.
uint64_t catchUpBlock(const AttentionStep &a, const Certificate &cert,
                      const float *qT, const int64_t *rows,
                      const int64_t *stateRows, const bool *valid, bool *ok);

/// Where the chain defers: keeps the per-head norms of row `row`'s exact
/// output `out` just finished (null: unknown) for its next bound.
void recordOutputNorms(const AttentionStep &a, Certificate &cert, int64_t row,
                       const float *out);

/// Sets the certificate's per-kv-head value norms from every value row (from
/// scratch; deferCandidates raises them with each new value).
void coverAllValues(const AttentionStep &a, Certificate &cert);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_ATTENTIONSTEP_H
