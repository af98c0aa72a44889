//===- Engine.h - the interpreter of a program's change-propagation steps -===//
//
// One engine runs a program's step list for every evaluation: from scratch
// (every row dirty: Evaluator, Session::reset) and after an edit (the rows
// the edit changed: Session::apply). It owns the cached values the cache
// plan keeps, the row-set registers, the attention accumulators and the VQ
// certificates; each step kind is one handler in steps/ (Steps.h).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ENGINE_ENGINE_H
#define INCNN_RUNTIME_ENGINE_ENGINE_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include "../ExactAttention.h"
#include "../Kernels.h"
#include "../ThreadPool.h"
#include "../steps/Certificates.h"

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace incnn::runtime {

using Rows = std::vector<int64_t>; // sorted, unique

Rows unite(const Rows &a, const Rows &b);
Rows allRows(int64_t n);

/// The result of applying a batch of edits to a token sequence.
struct EditPlan {
  std::vector<int32_t> tokens;
  std::vector<int64_t> from; ///< new row -> old row, -1 if inserted
  std::vector<int64_t> to;   ///< old row -> new row, -1 if deleted
  Rows edited;               ///< rows whose token is new or different
  Rows shifted;              ///< kept rows whose position changed
  Rows removed;              ///< old rows deleted
  bool lengthChanged = false;
};

/// Applies `edits` to `tokens`, tracking where each row came from.
Status planEdits(const Program &program, const std::vector<int32_t> &tokens,
                 const std::vector<TokenEdit> &edits, EditPlan &plan);

/// Where each row's cached data lives. Kept values and attention states are
/// stored by slot, so an insert or delete renumbers slots, not rows: the
/// update moves O(n) slot numbers and O(changed rows) data.
struct RowSlots {
  std::vector<int32_t> slotOf;   ///< row -> slot
  std::vector<int32_t> previous; ///< during an update: old row -> slot
  std::vector<int32_t> free;     ///< slots no row uses
  std::vector<int32_t> released; ///< slots of rows this update removed
  int64_t capacity = 0;          ///< slots allocated
  bool identity = true;          ///< slotOf[r] == r for every row

  /// Rows [0, n) in slots [0, n) (from scratch).
  void reset(int64_t n);
  /// Kept rows keep their slots, new rows take free ones; the slots of
  /// removed rows stay readable (via `previous`) until finishUpdate.
  void remap(const EditPlan &plan);
  void finishUpdate();
};

/// Storage of one value: all rows (kept values, vectors) or only the rows
/// computed in the current update.
struct ValueStore {
  int64_t width = 0;
  bool perToken = true;
  bool keepAll = true;
  std::vector<float> data;         ///< kept stores: by RowSlots slot
  const RowSlots *slots = nullptr; ///< kept per-token stores
  Rows rows;                       ///< partial stores: which rows `data` holds
  std::vector<int32_t> slotOf;     ///< partial stores: row -> slot, or -1
  /// Old rows overwritten or deleted in this update, by old row index
  /// (kept for attention keys/values, which subtract old terms).
  std::unordered_map<int64_t, std::vector<float>> stash;
  bool needsStash = false;

  const float *row(int64_t r) const {
    if (!perToken)
      return data.data() + r * width;
    int32_t slot = keepAll ? slots->slotOf[size_t(r)] : slotOf[size_t(r)];
    return slot < 0 ? nullptr : data.data() + int64_t(slot) * width;
  }
  float *row(int64_t r) {
    return const_cast<float *>(static_cast<const ValueStore *>(this)->row(r));
  }
};

struct EngineOptions {
  int numThreads = 0;
  bool vqCertificates = true;
  /// Keep every row of every value (the Evaluator's value() access).
  bool keepEverything = false;
};

class Engine {
public:
  Engine(const Program &program, const EngineOptions &options);
  Engine(const Engine &) = delete; // stores point at `slots`
  Engine &operator=(const Engine &) = delete;

  /// Runs every step: from scratch when `plan` is null (tokens already set),
  /// else the update for `plan` (after remapKept). Throws ContractBreach.
  void run(const EditPlan *plan);
  /// Gives kept rows their new positions before an update (slot numbers
  /// only; no row moves).
  void remapKept(const EditPlan &plan);
  /// Drops every stored row.
  void clear();
  /// Reserves room for n / 8 more rows in every kept store (after a
  /// from-scratch run), so that inserts do not copy every row.
  void reserveSlack(int64_t n);

  /// What an update changes besides the cached values, which a from-scratch
  /// run on the old tokens restores bit for bit.
  struct Snapshot {
    std::vector<int32_t> tokens;
    EditStats stats;
    std::vector<std::vector<double>> budgets, refNorms;
  };
  Snapshot snapshot() const;
  /// Rebuilds the state of `before` after an update was refused midway.
  void restore(Snapshot &&before);

  // State the step handlers work on -------------------------------------
  const Program &program;
  ThreadPool pool;
  /// Per instruction; shared by the engines of a loaded program.
  std::shared_ptr<const std::vector<kernels::PackedLinear>> packed;
  std::vector<ValueStore> values;               ///< per value
  RowSlots slots;                               ///< of kept rows
  std::vector<Rows> rowSets;                    ///< per register
  std::vector<exact::AttentionState> attention; ///< per instruction
  std::vector<int32_t> layerOf, vqIndexOf;      ///< per instruction, or -1
  std::vector<int64_t> lastUse;                 ///< per value: last instruction
  Certificates certificates;
  std::vector<std::vector<__int128>> poolSums; ///< per mean-pool instruction
  std::vector<int32_t> tokens;
  EditStats stats;
  const EditPlan *plan = nullptr; ///< the update in progress (null: scratch)
  std::vector<float> outputRows;  ///< the output in row order, when slots move
  int64_t numLayers = 0, numVQ = 0;
  bool keepEverything = false;
  /// Called before each step; true throws Interrupted (Session only).
  std::function<bool()> interruptCheck;

  int64_t numTokens() const { return int64_t(tokens.size()); }
  /// The pool for `work` multiply-accumulates, or none when waking threads
  /// would cost more than the work (small incremental updates).
  ThreadPool *poolFor(double work) { return work >= 4.0e5 ? &pool : nullptr; }
  /// The output value's rows in order.
  const std::vector<float> &output() const;
  /// Old row `old` of value `id` during an update (its stashed copy when
  /// this update overwrote it).
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
  /// Bytes of cached rows and accumulators.
  int64_t cacheBytes() const;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_ENGINE_ENGINE_H
