//===- Steps.h - one handler per step kind ----------------------*- C++ -*-===//
//
// The engine dispatches each Step of the program to the handler of its kind;
// a handler reads its input row-set registers, updates the rows of its
// instruction's results, writes its output register and adds to the stats.
// `engine.plan` is null for a from-scratch run (every row dirty).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_STEPS_H
#define INCNN_RUNTIME_STEPS_STEPS_H

#include "incnn/runtime/Program.h"

namespace incnn::runtime {

class Engine;

/// edited_rows, shifted_rows, union.
void runRowSetStep(Engine &engine, const Step &step);
/// recompute_rows: a token-local instruction (or VQ without cutoff).
void runRecomputeRows(Engine &engine, const Step &step);
/// vector_update: a vector instruction after its input changed.
void runVectorUpdate(Engine &engine, const Step &step);
/// attention_update: full rows for changed queries, delta terms otherwise.
void runAttentionUpdate(Engine &engine, const Step &step);
/// vq_cutoff: re-quantize rows; only flipped codes stay dirty.
void runVQCutoff(Engine &engine, const Step &step);
/// pool_update: the pooled vector from changed rows.
void runPoolUpdate(Engine &engine, const Step &step);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_STEPS_H
