//===- Steps.h - one handler per step kind ----------------------*- C++ -*-===//
//
// Each step kind of StepTable.def has a file in this folder that states its
// change rule and exports its StepRules: which instructions it may update
// (the verifier), which values it reads between edits (the cache plan) and
// how it runs. A handler gets a StepContext (StepContext.h), not the engine:
// it reads its input row-set registers, updates the rows of its
// instruction's results, writes its output register and adds to the stats;
// the context's plan() is null for a from-scratch run (every row dirty).
// Each step file's header comment states its change rule, and a test
// beside it in runtime/test/steps/ checks the step alone against
// recomputation.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_STEPS_H
#define INCNN_RUNTIME_STEPS_STEPS_H

#include "incnn/runtime/Program.h"

namespace incnn::runtime {

class StepContext;

/// StepTable.def's Output column.
enum class StepOutput { Union, Fresh };

/// What cache planning asks of a step about the values it reads.
class CacheNeeds {
public:
  virtual ~CacheNeeds() = default;
  /// `value` must be kept between edits; `reason` completes "step N (...)".
  virtual void keep(int32_t value, const char *reason) = 0;
  /// True if the update recomputes every row of `value` that row-set
  /// register `rows` can hold (so those rows need not be kept).
  virtual bool recomputes(int32_t value, int32_t rows) const = 0;
  /// The step takes the changes of `value` from row-set register `rows`,
  /// which must hold every row of it the update can change (a program whose
  /// step misses some is refused).
  virtual void takesChanges(int32_t value, int32_t rows) = 0;
};

struct StepRules {
  /// Whether a step of this kind may update `in`; null: it names none.
  bool (*updates)(const Program &program, const Instr &in);
  /// Declares the values of its instruction it reads between edits.
  void (*cacheNeeds)(const Program &program, const Step &step,
                     CacheNeeds &needs);
  void (*run)(StepContext &context, const Step &step);
};

/// edited_rows, shifted_rows, union (RowSets.cpp).
extern const StepRules kRowSetStep;
/// recompute_rows (RecomputeRows.cpp).
extern const StepRules kRecomputeRowsStep;
/// vector_update (VectorUpdate.cpp).
extern const StepRules kVectorUpdateStep;
/// attention_update (AttentionUpdate.cpp).
extern const StepRules kAttentionUpdateStep;
/// vq_cutoff (VQCutoff.cpp).
extern const StepRules kVQCutoffStep;
/// pool_update (PoolUpdate.cpp).
extern const StepRules kPoolUpdateStep;

/// The rules of a step kind (StepTable.def's Handler column).
inline const StepRules &stepRules(StepKind kind) {
  switch (kind) {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  case StepKind::Name:                                                         \
    return k##Handler##Step;
#include "incnn/runtime/StepTable.def"
  }
  return kRowSetStep; // unreachable: the loader checks kinds
}

/// Row-set registers a step kind reads (-1: any number).
inline int stepInputs(StepKind kind) {
  switch (kind) {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  case StepKind::Name:                                                         \
    return Inputs;
#include "incnn/runtime/StepTable.def"
  }
  return 0;
}

/// True if a step kind's row set is the union of its inputs' changes (else
/// a fresh source of change).
inline bool stepOutputIsUnion(StepKind kind) {
  switch (kind) {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  case StepKind::Name:                                                         \
    return StepOutput::Output == StepOutput::Union;
#include "incnn/runtime/StepTable.def"
  }
  return false;
}

/// The cache needs of recompute_rows and vector_update: operands read at
/// rows the update does not recompute must be kept.
void tokenLocalCacheNeeds(const Program &program, const Step &step,
                          CacheNeeds &needs);

/// An instruction whose rows depend on their own inputs' rows only.
inline bool isTokenLocal(OpCode op) {
  return op != OpCode::Attention && op != OpCode::VectorQuantize &&
         op != OpCode::Pool;
}

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_STEPS_H
