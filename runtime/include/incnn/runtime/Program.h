//===- Program.h - In-memory form of an incnn program -----------*- C++ -*-===//
//
// The runtime owns the program format. The compiler fills a `Program` and
// calls `writeProgram`; the runtime loads one with `loadProgram` (mmap).
//
// A program is a straight-line list of instructions over numbered values.
// Every value is either a per-token matrix [n, width] (n = sequence length)
// or a single vector [width] (after pooling). Weights are named tensors.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_PROGRAM_H
#define INCNN_RUNTIME_PROGRAM_H

#include "incnn/runtime/Status.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace incnn::runtime {

/// Current program file version; bump on any incompatible change.
inline constexpr uint32_t kProgramVersion = 5;
/// The oldest version this runtime reads (3: no attention windows; before
/// 5: no certificate table, the loader finds the chains itself).
inline constexpr uint32_t kMinProgramVersion = 3;
/// Upper bound on a value's width: a hostile file cannot ask for absurd
/// allocations at evaluation time.
inline constexpr int64_t kMaxValueWidth = int64_t(1) << 24;

/// Opcodes, one line each in OpTable.def (stable numbers: they are written
/// to files). Those with rules of their own:
///   embed: results[0][i] = weights[0][tokens[i]] (+ weights[1][0], BERT's
///     token type 0, when given); operands[0] is the token input.
///   add_learned_positions: results[0][i] = operands[0][i] +
///     weights[0][i + attrs.positionOffset].
///   layer_norm / rms_norm: over the row; weights = {gamma[, beta]} / {gamma};
///     attrs.epsilon.
///   linear: y = x W^T (+ b): weights = {W [out,in]} or {W, b [out]}; rows
///     or a vector.
///   attention: multi-head; operands = {q, k, v} (already projected). attrs:
///     numHeads, numKvHeads, causal, ropeTheta (0 = no rotary), scale
///     (multiplies q.k), window (> 0: sliding window, see
///     exact::AttentionShape). Rotary (HF half-split layout) applies to q and
///     k with absolute positions 0..n-1 before the dot products.
///   vector_quantize: weights = {codebook [G, K, width/G]}; results =
///     {quantized [n,width], codes [n,G] (stored as float ids)}.
///   pool: rows to a vector: attrs.pool = Last (row n-1), First (row 0) or
///     Mean.
enum class OpCode : uint32_t {
#define INCNN_OP(Name, Code, Str, Mnemonic) Name = Code,
#include "incnn/runtime/OpTable.def"
};

/// How an opcode is verified, computed and lowered: by rules of its own, or
/// as one of the elementwise families of OpTable.def.
enum class OpFamily { Special, Unary, Binary, Gated };
OpFamily opFamily(OpCode op);

/// Lower-case name of an opcode ("linear"), or "unknown".
const char *opCodeName(OpCode op);

/// The opcode a `vqt` op of this mnemonic ("vq", "relu") lowers to, if any.
std::optional<OpCode> opCodeOfMnemonic(std::string_view mnemonic);

enum class PoolKind : uint32_t { Last = 0, Mean = 1, First = 2 };

struct InstrAttrs {
  float epsilon = 0.0f;
  int32_t positionOffset = 0;
  int32_t numHeads = 0;
  int32_t numKvHeads = 0;
  bool causal = true;
  float ropeTheta = 0.0f;
  float scale = 1.0f;
  int64_t window = 0; ///< attention: > 0 attends only the nearest keys
  PoolKind pool = PoolKind::Last;
};

struct Instr {
  OpCode op;
  std::vector<int32_t> operands; ///< value ids
  std::vector<int32_t> weights;  ///< weight ids
  std::vector<int32_t> results;  ///< value ids
  InstrAttrs attrs;
};

/// A value: per-token matrix [n, width] or a vector [width].
struct ValueInfo {
  int32_t width = 0;
  bool perToken = true;
  std::string name; ///< for debugging and --emit output
  /// Cache plan: keep every row between edits (else only rows computed
  /// during an update). Set by the compiler's delta-plan-cache pass.
  bool keepAllRows = true;
  /// Kept rows are read from a weight table, not stored (delta.cache's
  /// `from_table`; tableRowsOf says which values may be).
  bool tableRows = false;
};

/// A named fp32 tensor. `data` points into the mapped file (or `owned`).
struct Weight {
  std::string name;
  std::vector<int64_t> shape;
  const float *data = nullptr;
  std::vector<float> owned; ///< used when the program is built in memory
  /// Product of `shape`; -1 if a dimension is negative or the product
  /// overflows int64_t.
  int64_t numElements() const;
  /// The tensor data: `owned` when it is non-empty, else `data`. Use this
  /// rather than `data` so that copies of an in-memory Program stay valid.
  const float *ptr() const { return owned.empty() ? data : owned.data(); }
};

/// The kinds of steps of a change-propagation program (the delta dialect's
/// update ops), one line each in StepTable.def.
enum class StepKind : uint32_t {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler) Name = Code,
#include "incnn/runtime/StepTable.def"
};

const char *stepKindName(StepKind kind);

/// One step of the change-propagation program. Row sets live in numbered
/// registers, each written by exactly one step.
struct Step {
  StepKind kind = StepKind::Union;
  int32_t instr = -1;          ///< the instruction it updates (-1 for row sets)
  std::vector<int32_t> inputs; ///< row-set registers read
  int32_t output = -1;         ///< row-set register written
};

/// A VQ margin certificate chain, chosen by the compiler: the
/// vector_quantize instruction `vq` reads the attention instruction
/// `attention`'s output through the linear instruction `linear` (or directly:
/// -1), and no other instruction reads the values in between, so a row whose
/// attention output moves too little to flip a code can skip the rest of the
/// chain (runtime/src/steps/Certificates.h). `normBound` claims an upper
/// bound of the linear weight's spectral norm ||W||_2 (0: no claim; the
/// runtime then uses its own min(||W||_F, sqrt(||W||_1 ||W||_inf))). The
/// loader verifies the chain's structure and the claim and refuses the
/// program if either is wrong (docs/program-format.md). `defer`: the
/// compiler asks the attention_update step to defer the exact update of rows
/// whose codes a bound proves unchanged (docs/exactness.md).
struct CertificateChain {
  int32_t attention = -1;
  int32_t linear = -1;
  int32_t vq = -1;
  double normBound = 0.0;
  bool defer = false;
};

/// What the output is: a causal LM's next-token logits or a document's label
/// logits (a vector), or one row of label logits per token.
enum class TaskKind : uint32_t {
  CausalLM = 0,
  Classifier = 1,
  TokenClassifier = 2
};
/// "causal_lm", "classifier", "token_classifier" (as written to files).
const char *taskName(TaskKind task);
/// The task named `name`; false if there is none.
bool taskOfName(std::string_view name, TaskKind &task);

struct Program {
  // Model metadata.
  std::string family; ///< "opt" or "llama"
  TaskKind task = TaskKind::CausalLM;
  int32_t vocabSize = 0;
  int32_t maxPositions = 0;        ///< context window
  std::string positionScheme;      ///< "learned", "rope" or "none"
  std::vector<std::string> labels; ///< classifier label names
  int32_t bosTokenId = -1, eosTokenId = -1, padTokenId = -1;
  std::string tokenizer; ///< serialized sentencepiece model, may be empty

  // Graph.
  std::vector<ValueInfo> values;
  std::vector<Weight> weights;
  std::vector<Instr> instrs;
  int32_t tokenValue = 0;  ///< the token-id input (width 1, perToken)
  int32_t outputValue = 0; ///< logits: a vector, per token for TokenClassifier

  // Change propagation: the compiler's delta program, run by every session
  // (from scratch with every row dirty).
  std::vector<Step> steps;
  int32_t numRowSets = 0;  ///< registers
  int32_t outputRows = -1; ///< the register of the output's dirty set
  /// VQ margin certificates (version 5; older files: every chain the
  /// structure allows, found by the loader, with no norm claims).
  std::vector<CertificateChain> certificateChains;

  /// Keeps the mapping alive when loaded from a file.
  std::shared_ptr<void> backing;
};

/// Prints the program as text: its instructions, then its change-propagation
/// steps one per line (`%r5 = attention_update @11 attention 'attn' query
/// %r3 keys %r4`), then the cache plan, then the certificate chains with
/// their norm bounds. Stable enough for FileCheck tests.
std::string printProgram(const Program &program);

/// What every row of a value is a function of, when that is a few discrete
/// inputs of its own row: its token, and the codes of one-group VQs whose
/// codes are kept (such a VQ's quantized row is its code's codeword). An
/// embedding without token types is keyed by the token, a one-group VQ's
/// output by its codes, a token-local instruction other than added positions
/// by the union of its operands' keys; nothing else is keyed.
struct RowKey {
  bool keyed = false;
  bool token = false;       ///< the token is part of the key
  std::vector<int32_t> vqs; ///< VectorQuantize instructions, in order
};
std::vector<RowKey> rowKeys(const Program &program);

/// Where the rows of a kept value may be read from a table instead of stored
/// (ValueInfo::tableRows):
///  - a weight table indexed by the token: an embedding without token types;
///  - a one-group VQ's codebook indexed by the code, for a VQ's quantized
///    output whose codes are kept and whose old rows no step reads (not an
///    attention's or pool's operand);
///  - a table the runtime computes once per program (every key through the
///    instructions that lead to the value) for any other keyed value
///    (rowKeys), indexed by its key: the token, then each VQ's code, mixed
///    radix. At most kMaxComputedTableBytes.
/// Never the token input or the output. Else nullopt. A computed table also
/// gives the rows a step reads before an edit (the old key's row).
struct TableRows {
  int32_t weight = -1; ///< the weight table, [rows, width] or [1, K, width];
                       ///< -1: a computed table
  int32_t index = -1;  ///< a weight table's index: the codes value, or -1
                       ///< for the token
  RowKey key;          ///< a computed table's key
  std::vector<int32_t> codes, radix; ///< per key VQ: its codes value and K
  int64_t rows = 0;                  ///< a computed table's rows
};
/// The largest computed table (rows x width floats) a program may ask the
/// runtime for.
constexpr int64_t kMaxComputedTableBytes = int64_t(64) << 20;
std::optional<TableRows> tableRowsOf(const Program &program, int32_t value);

/// Bytes a session keeps per token under the program's cache plan: every
/// kept per-token value not read from a table (4 bytes a column) and the
/// attention accumulators.
int64_t cacheBytesPerToken(const Program &program);

/// Bytes of the tables the runtime computes once per program for the values
/// read from them (tableRowsOf's computed tables), shared by its sessions.
int64_t computedTableBytes(const Program &program);

/// Checks that a program is well formed (ids in range, shapes consistent),
/// including its certificate chains and their norm claims. Programs built in
/// memory must pass it before a Session or Evaluator runs them.
Status verifyProgram(const Program &program);

/// Every attention -> [linear ->] vector_quantize chain the structure of a
/// verified program admits (the rule verifyProgram holds each certificate
/// chain to), in program order, with no norm claims.
std::vector<CertificateChain> findCertificateChains(const Program &program);

/// Writes `program` to `path`, weights 64-byte aligned.
Status writeProgram(const Program &program, const std::string &path);

/// Loads (mmaps) a program file and verifies it. Never crashes on bad input.
Status loadProgram(const std::string &path, Program &program);

/// Same, from bytes in memory (copied). Used by the fuzzer.
Status loadProgramFromBuffer(const void *data, size_t size, Program &program);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_PROGRAM_H
