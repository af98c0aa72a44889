//===- RowOps.h - one instruction over a set of rows -------------*- C++
//-*-===//
//
// Shared by the from-scratch Evaluator (all rows) and the incremental Session
// (dirty rows only), so both run the very same row-invariant kernels.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ROWOPS_H
#define INCNN_RUNTIME_ROWOPS_H

#include "ExactAttention.h"
#include "Kernels.h"
#include "incnn/runtime/Program.h"

#include <vector>

namespace incnn::runtime {

/// Packed weights of every Linear instruction (indexed by instruction).
std::vector<kernels::PackedLinear> packLinearWeights(const Program &program,
                                                     ThreadPool *pool);

/// Computes `m` rows of a token-local instruction (every opcode except
/// Attention, VectorQuantize and Pool). `inputs[i]` holds the m matching rows
/// of operand i, contiguous. `tokens` (Embed) and `positions`
/// (AddLearnedPositions) describe the rows. Writes m rows to `out`.
void runRows(const Program &program, const Instr &instr,
             const kernels::PackedLinear *packed, const float *const *inputs,
             int64_t m, const int32_t *tokens, const int64_t *positions,
             float *out, ThreadPool *pool);

/// The shape of an Attention instruction.
exact::AttentionShape attentionShape(const Program &program,
                                     const Instr &instr);

/// MACs of `m` rows of a token-local instruction.
uint64_t rowMacs(const Program &program, const Instr &instr, int64_t m);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_ROWOPS_H
