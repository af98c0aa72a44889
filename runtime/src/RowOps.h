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

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace incnn::runtime {

/// Where an evaluation leaves the exactness contract (docs/exactness.md).
enum class Breach {
  AttentionScore, ///< a score is non-finite or above exact::kMaxScore
  AttentionValue, ///< a value is non-finite or above its bound
  NonFinite,      ///< an input of a VQ step, or the output
  PoolInput,      ///< a pooled value is non-finite or above 2^40
};

/// Thrown by the engines on a breach and turned into Status::breach by their
/// entry points.
struct ContractBreach : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Thrown by the engine when the caller's interrupt check says stop.
struct Interrupted {};

/// Throws ContractBreach naming instruction `index` (or the output, when
/// index is the instruction count) and what broke.
[[noreturn]] void throwBreach(const Program &program, size_t index,
                              Breach what);

/// Throws the breach exact::attention reported: AttentionValue when a value
/// of v[0, count) is outside `bound`, else AttentionScore.
[[noreturn]] void throwAttentionBreach(const Program &program, size_t index,
                                       const float *v, int64_t count,
                                       float bound);

/// Throws unless x[0, n) is finite (a VQ or pool input, or the output).
void checkFinite(const Program &program, size_t index, const float *x,
                 int64_t n);

/// Packed weights of every Linear instruction (indexed by instruction). A
/// program loaded from a file (read-only, mapped) is packed once per process
/// and shared by every engine on it; an in-memory one, whose weights may
/// change, is packed for each caller.
std::shared_ptr<const std::vector<kernels::PackedLinear>>
packLinearWeights(const Program &program, ThreadPool *pool);

/// Per value: the rows of a value read from a computed table (tableRowsOf's
/// weight -1, ValueInfo::tableRows), one per key (token and codes, mixed
/// radix), each computed from its key by the instructions leading to the
/// value with runRows (a key VQ's rows its codewords), so bit for bit any
/// row of a run with that token and those codes. Empty for other values, and
/// for all of them when the tables would take over 256 MiB or 2^34
/// multiply-adds to compute (their rows are then stored).
using KeyedTables = std::vector<std::vector<float>>;

/// The program's computed tables, built like packLinearWeights: once per
/// process for a mapped program, for each caller otherwise.
std::shared_ptr<const KeyedTables>
tabulateKeyedRows(const Program &program,
                  const std::vector<kernels::PackedLinear> &packed,
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
