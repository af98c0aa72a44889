//===- Engine.h - the interpreter of a program's change-propagation steps -===//
//
// One engine runs a program's step list for every evaluation: from scratch
// (every row dirty: Evaluator, Session::reset) and after an edit (the rows
// the edit changed: Session::apply). It owns the cached values the cache
// plan keeps, the attention accumulators, the mean-pool sums and the VQ
// certificates; each step kind is one handler in steps/ (Steps.h), which
// sees that state through the engine's StepContext only.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ENGINE_ENGINE_H
#define INCNN_RUNTIME_ENGINE_ENGINE_H

#include "incnn/runtime/Edits.h"
#include "incnn/runtime/Program.h"

#include "../ExactAttention.h"
#include "../Kernels.h"
#include "../RowOps.h"
#include "../ThreadPool.h"
#include "../steps/Certificates.h"
#include "../steps/StepContext.h"
#include "EditPlan.h"
#include "ValueStore.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace incnn::runtime {

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

  /// Starts a run as run() does before its first step, for tests that then
  /// run steps one at a time through context().
  void begin(const EditPlan *plan);
  /// What the step handlers work on.
  StepContext &context() { return ctx; }

  const Program &program;
  ThreadPool pool;
  std::vector<int32_t> tokens;
  EditStats stats;
  int64_t numLayers = 0, numVQ = 0;
  /// Called before each step and between parts of long ones (from-scratch
  /// attention); true throws Interrupted (Session only).
  std::function<bool()> interruptCheck;

  int64_t numTokens() const { return int64_t(tokens.size()); }
  /// The output value's rows in order.
  const std::vector<float> &output() const;
  /// The stored data of value `id` (its rows in order when every row is
  /// kept and the slots are the identity, as after a from-scratch run).
  const std::vector<float> &stored(int32_t id) const {
    return values.at(size_t(id)).data;
  }
  /// Bytes of cached rows and accumulators.
  int64_t cacheBytes() const;

private:
  void runStep(const Step &step);
  void finish();
  /// stats.changedOutputRows, from the output's dirty rows and old rows.
  void findChangedOutputRows();
  /// Reserves room for n / 8 more rows in every kept store (after a
  /// from-scratch run), so that inserts do not copy every row.
  void reserveSlack(int64_t n);

  /// Per instruction; shared by the engines of a loaded program.
  std::shared_ptr<const std::vector<kernels::PackedLinear>> packed;
  /// Rows of the values read from computed tables (RowOps.h).
  std::shared_ptr<const KeyedTables> keyedTables;
  std::vector<ValueStore> values;               ///< per value
  RowSlots slots;                               ///< of kept rows
  std::vector<exact::AttentionState> attention; ///< per instruction
  std::vector<int32_t> layerOf, vqIndexOf;      ///< per instruction, or -1
  std::vector<int64_t> lastUse;                 ///< per value: last instruction
  Certificates certificates;
  std::vector<std::vector<__int128>> poolSums; ///< per mean-pool instruction
  std::vector<float> outputRows; ///< the output in row order, if not stored so
  bool outputInRowOrder = true;  ///< the output's store holds it in row order
  bool keepEverything = false;
  StepContext ctx; ///< refers to the members above: declared last
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_ENGINE_ENGINE_H
