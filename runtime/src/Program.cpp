//===- Program.cpp - opcodes, step kinds and sizes of a program -----------===//
#include "incnn/runtime/Program.h"

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

std::vector<char> tokenDeterminedValues(const Program &program) {
  std::vector<char> determined(program.values.size(), 0);
  for (const Instr &in : program.instrs) {
    if (in.results.size() != 1)
      continue;
    bool is;
    switch (in.op) {
    case OpCode::Embed:
      is = in.weights.size() == 1;
      break;
    case OpCode::AddLearnedPositions:
    case OpCode::Attention:
    case OpCode::VectorQuantize:
    case OpCode::Pool:
      is = false;
      break;
    default: // token-local (RowOps.h's runRows)
      is = !in.operands.empty();
      for (int32_t operand : in.operands)
        is = is && program.values[size_t(operand)].perToken &&
             determined[size_t(operand)];
    }
    int32_t result = in.results[0];
    determined[size_t(result)] = is && program.values[size_t(result)].perToken;
  }
  return determined;
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
  if (def->op == OpCode::Embed && def->weights.size() == 1)
    return TableRows{def->weights[0], -1};
  if (def->op == OpCode::VectorQuantize && def->results.size() == 2 &&
      def->weights.size() == 1 && !oldRowsRead &&
      program.weights[size_t(def->weights[0])].shape.size() == 3 &&
      program.weights[size_t(def->weights[0])].shape[0] == 1 &&
      program.values[size_t(def->results[1])].keepAllRows)
    return TableRows{def->weights[0], def->results[1]};
  if (tokenDeterminedValues(program)[size_t(value)] &&
      int64_t(program.vocabSize) * info.width * int64_t(sizeof(float)) <=
          kMaxTokenTableBytes)
    return TableRows{-1, -1};
  return std::nullopt;
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
