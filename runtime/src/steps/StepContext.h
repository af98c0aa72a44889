//===- StepContext.h - what a step handler may touch ------------*- C++ -*-===//
//
// A step handler (Steps.h) works on a StepContext, not on the engine. The
// context gives it the program, the edit in progress, the row-set
// registers, the value stores (read rows, compute into, store), the state
// that some steps keep between edits (attention accumulators, mean-pool
// sums, VQ certificates), the thread pool and the statistics. The engine
// owns that state and builds its context once (engine/Engine.h): the
// context only refers to it, so a handler cannot start a run, remap or
// clear the stores, or take a snapshot. Tests run one step alone through
// an engine's context (runtime/test/steps/).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_STEPCONTEXT_H
#define INCNN_RUNTIME_STEPS_STEPCONTEXT_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include "../ExactAttention.h"
#include "../Kernels.h"
#include "../ThreadPool.h"
#include "../engine/EditPlan.h"
#include "../engine/ValueStore.h"
#include "Certificates.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace incnn::runtime {

class Engine;

class StepContext {
public:
  /// The engine's state, by reference (per instruction: packed weights,
  /// attention states, pool sums, layer and VQ indices; per value: stores).
  StepContext(const Program &program, const std::vector<int32_t> &tokens,
              const std::vector<kernels::PackedLinear> &packed,
              std::vector<ValueStore> &values, const RowSlots &slots,
              std::vector<exact::AttentionState> &attention,
              std::vector<std::vector<__int128>> &poolSums,
              const std::vector<int32_t> &layerOf,
              const std::vector<int32_t> &vqIndexOf, Certificates &certificates,
              EditStats &stats, ThreadPool &pool);
  StepContext(const StepContext &) = delete;
  StepContext &operator=(const StepContext &) = delete;

  const Program &program;
  /// VQ margin certificates: attention_update certifies rows, the linear
  /// layer's recompute_rows records reference norms, vq_cutoff sets budgets.
  Certificates &certificates;
  /// The MACs spent, rows certified and rows recomputed (per-layer and
  /// per-VQ counts: dirtyRowsOf, updatedRowsOf, codeFlipsOf).
  EditStats &stats;

  // The run ----------------------------------------------------------------
  /// The edit being propagated; null in a from-scratch run (every row dirty).
  const EditPlan *plan() const { return plan_; }
  int64_t numTokens() const { return int64_t(tokens.size()); }
  /// The token at `row` (Embed).
  int32_t token(int64_t row) const { return tokens[size_t(row)]; }
  /// Row-set register `reg` (sorted, unique rows).
  Rows &rowSet(int32_t reg) { return rowSets[size_t(reg)]; }

  // Values -----------------------------------------------------------------
  ValueStore &value(int32_t id) { return values[size_t(id)]; }
  const ValueStore &value(int32_t id) const { return values[size_t(id)]; }
  /// Old row `old` of a store during an update (its stashed copy when this
  /// update overwrote it).
  const float *oldRow(const ValueStore &store, int64_t old) const;
  /// The value's rows in order: the stored data itself when the slots are
  /// the identity, else a copy in `scratch`.
  const std::vector<float> &logical(int32_t id,
                                    std::vector<float> &scratch) const;
  /// Copies rows `rows` of value `id` into a contiguous buffer.
  std::vector<float> gather(int32_t id, const Rows &rows) const;
  /// Rows `rows` of value `id`, contiguous: the stored data itself when it
  /// holds exactly those rows in order (from scratch), else a copy in
  /// `scratch`.
  const float *rowsOf(int32_t id, const Rows &rows,
                      std::vector<float> &scratch) const;
  /// Where a step computes `rows` of value `id`: the value's own storage
  /// when they are every row and nothing old must be kept (no copy; `direct`
  /// set), else `scratch`, to be passed to storeRows.
  float *destination(int32_t id, const Rows &rows, std::vector<float> &scratch,
                     bool &direct);
  /// Stores computed rows of value `id` (stashing old rows it overwrites
  /// where attention needs them).
  void storeRows(int32_t id, const Rows &rows, std::vector<float> &&computed);

  // State kept by steps, per instruction ---------------------------------
  const kernels::PackedLinear &packed(size_t instr) const {
    return packed_[instr];
  }
  /// The exact accumulators of an attention instruction, by slot.
  exact::AttentionState &attention(size_t instr) { return attention_[instr]; }
  /// Row -> slot of the attention states (and of kept stores).
  const std::vector<int32_t> &slotOf() const { return slots.slotOf; }
  /// The exact column sums of a mean-pool instruction.
  std::vector<__int128> &poolSum(size_t instr) { return poolSums[instr]; }

  // Threads and statistics -------------------------------------------------
  ThreadPool &pool() { return pool_; }
  /// Between parts of a long step (and before each step): throws Interrupted
  /// when the session's interrupt check says so. Set by the engine.
  std::function<void()> checkpoint;
  /// The pool for `work` multiply-accumulates, or none when waking threads
  /// would cost more than the work (small incremental updates).
  ThreadPool *poolFor(double work) { return work >= 4.0e5 ? &pool_ : nullptr; }
  /// Rows an attention instruction's layer recomputed in full.
  int64_t &dirtyRowsOf(size_t attention) {
    return stats.dirtyRows[size_t(layerOf[attention])];
  }
  /// Rows an attention instruction delta-updated.
  int64_t &updatedRowsOf(size_t attention) {
    return stats.updatedRows[size_t(layerOf[attention])];
  }
  /// Where an attention instruction's update spent its time.
  AttentionMicros &attentionMicrosOf(size_t attention) {
    return stats.attentionMicros[size_t(layerOf[attention])];
  }
  /// Rows whose codes a VectorQuantize instruction changed.
  int64_t &codeFlipsOf(size_t vq) {
    return stats.codeFlips[size_t(vqIndexOf[vq])];
  }

private:
  friend class Engine; // starts and ends runs

  const std::vector<int32_t> &tokens;
  const std::vector<kernels::PackedLinear> &packed_;
  std::vector<ValueStore> &values;
  const RowSlots &slots;
  std::vector<exact::AttentionState> &attention_;
  std::vector<std::vector<__int128>> &poolSums;
  const std::vector<int32_t> &layerOf, &vqIndexOf;
  ThreadPool &pool_;
  const EditPlan *plan_ = nullptr;
  std::vector<Rows> rowSets; ///< per register, for one run
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_STEPCONTEXT_H
