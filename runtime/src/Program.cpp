//===- Program.cpp - opcodes, step kinds and sizes of a program -----------===//
#include "incnn/runtime/Program.h"

#include <algorithm>
#include <iterator>
#include <limits>

namespace incnn::runtime {

const char *opCodeName(OpCode op) {
  switch (op) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  case OpCode::Name:                                                           \
    return Str;
#include "incnn/runtime/OpTable.def"
  }
  return "unknown";
}

OpFamily opFamily(OpCode op) {
  switch (op) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  case OpCode::Name:                                                           \
    return OpFamily::Special;
#define INCNN_UNARY_OP(Name, Code, Str, Kernel)                                \
  case OpCode::Name:                                                           \
    return OpFamily::Unary;
#define INCNN_BINARY_OP(Name, Code, Str, Kernel)                               \
  case OpCode::Name:                                                           \
    return OpFamily::Binary;
#define INCNN_GATED_OP(Name, Code, Str, Activation)                            \
  case OpCode::Name:                                                           \
    return OpFamily::Gated;
#include "incnn/runtime/OpTable.def"
  }
  return OpFamily::Special;
}

std::optional<OpCode> opCodeOfMnemonic(std::string_view mnemonic) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  if (mnemonic == Mnemonic)                                                    \
    return OpCode::Name;
#include "incnn/runtime/OpTable.def"
  return std::nullopt;
}

const char *taskName(TaskKind task) {
  switch (task) {
  case TaskKind::CausalLM:
    return "causal_lm";
  case TaskKind::Classifier:
    return "classifier";
  case TaskKind::TokenClassifier:
    return "token_classifier";
  }
  return "unknown";
}

bool taskOfName(std::string_view name, TaskKind &task) {
  for (TaskKind t :
       {TaskKind::CausalLM, TaskKind::Classifier, TaskKind::TokenClassifier})
    if (name == taskName(t)) {
      task = t;
      return true;
    }
  return false;
}

int64_t Weight::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<int64_t>::max() / d))
      return -1;
    n *= d;
  }
  return n;
}

namespace {

/// A one-group VQ's codebook ([1, K, width]) whose codes are kept.
bool keptOneGroupVQ(const Program &program, const Instr &in) {
  if (in.op != OpCode::VectorQuantize || in.results.size() != 2 ||
      in.weights.size() != 1)
    return false;
  const Weight &codebook = program.weights[size_t(in.weights[0])];
  return codebook.shape.size() == 3 && codebook.shape[0] == 1 &&
         program.values[size_t(in.results[1])].keepAllRows;
}

} // namespace

std::vector<RowKey> rowKeys(const Program &program) {
  std::vector<RowKey> keys(program.values.size());
  for (size_t i = 0; i < program.instrs.size(); ++i) {
    const Instr &in = program.instrs[i];
    if (in.results.empty() || !program.values[size_t(in.results[0])].perToken)
      continue;
    RowKey key;
    switch (in.op) {
    case OpCode::Embed:
      key.keyed = in.weights.size() == 1;
      key.token = true;
      break;
    case OpCode::VectorQuantize:
      key.keyed = keptOneGroupVQ(program, in);
      key.vqs = {int32_t(i)};
      break;
    case OpCode::AddLearnedPositions:
    case OpCode::Attention:
    case OpCode::Pool:
      break;
    default: // token-local (RowOps.h's runRows): the operands' keys
      key.keyed = !in.operands.empty() && in.results.size() == 1;
      for (int32_t operand : in.operands) {
        const RowKey &k = keys[size_t(operand)];
        key.keyed =
            key.keyed && program.values[size_t(operand)].perToken && k.keyed;
        key.token = key.token || k.token;
        std::vector<int32_t> merged;
        std::set_union(key.vqs.begin(), key.vqs.end(), k.vqs.begin(),
                       k.vqs.end(), std::back_inserter(merged));
        key.vqs = std::move(merged);
      }
    }
    if (key.keyed)
      keys[size_t(in.results[0])] = std::move(key);
  }
  return keys;
}

std::optional<TableRows> tableRowsOf(const Program &program, int32_t value) {
  const ValueInfo &info = program.values[size_t(value)];
  if (!info.perToken || !info.keepAllRows || value == program.tokenValue ||
      value == program.outputValue)
    return std::nullopt;
  bool oldRowsRead = false;
  const Instr *def = nullptr;
  for (const Instr &in : program.instrs) {
    bool readsOld = in.op == OpCode::Attention || in.op == OpCode::Pool;
    for (int32_t operand : in.operands)
      oldRowsRead = oldRowsRead || (operand == value && readsOld);
    if (!in.results.empty() && in.results[0] == value)
      def = &in;
  }
  if (!def)
    return std::nullopt;
  TableRows t;
  if (def->op == OpCode::Embed && def->weights.size() == 1) {
    t.weight = def->weights[0];
    return t;
  }
  if (keptOneGroupVQ(program, *def) && !oldRowsRead) {
    t.weight = def->weights[0];
    t.index = def->results[1];
    return t;
  }
  t.key = rowKeys(program)[size_t(value)];
  if (!t.key.keyed)
    return std::nullopt;
  int64_t limit = kMaxComputedTableBytes / int64_t(sizeof(float)) / info.width;
  t.rows = t.key.token ? int64_t(program.vocabSize) : 1;
  for (int32_t vq : t.key.vqs) {
    const Instr &in = program.instrs[size_t(vq)];
    int64_t codes = program.weights[size_t(in.weights[0])].shape[1];
    if (codes <= 0 || t.rows > limit / codes)
      return std::nullopt;
    t.rows *= codes;
    t.codes.push_back(in.results[1]);
    t.radix.push_back(int32_t(codes));
  }
  if (t.rows > limit)
    return std::nullopt;
  return t;
}

int64_t computedTableBytes(const Program &program) {
  int64_t bytes = 0;
  for (size_t v = 0; v < program.values.size(); ++v)
    if (program.values[v].tableRows)
      if (std::optional<TableRows> t = tableRowsOf(program, int32_t(v));
          t && t->weight < 0)
        bytes += t->rows * program.values[v].width * int64_t(sizeof(float));
  return bytes;
}

int64_t cacheBytesPerToken(const Program &program) {
  int64_t bytes = 0;
  for (size_t i = 0; i < program.values.size(); ++i)
    if (program.values[i].perToken && program.values[i].keepAllRows &&
        int32_t(i) != program.tokenValue && !program.values[i].tableRows)
      bytes += 4 * int64_t(program.values[i].width);
  for (const Instr &in : program.instrs)
    if (in.op == OpCode::Attention)
      bytes += 16 * int64_t(in.attrs.numHeads) +
               8 * int64_t(program.values[size_t(in.operands[0])].width);
  return bytes;
}

const char *stepKindName(StepKind kind) {
  switch (kind) {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  case StepKind::Name:                                                         \
    return Str;
#include "incnn/runtime/StepTable.def"
  }
  return "unknown";
}

} // namespace incnn::runtime
