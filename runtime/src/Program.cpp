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

std::optional<TableRows> tableRowsOf(const Program &program, int32_t value) {
  const ValueInfo &info = program.values[size_t(value)];
  if (!info.perToken || !info.keepAllRows || value == program.tokenValue ||
      value == program.outputValue)
    return std::nullopt;
  std::optional<TableRows> rows;
  for (const Instr &in : program.instrs) {
    bool readsOld = in.op == OpCode::Attention || in.op == OpCode::Pool;
    for (int32_t operand : in.operands)
      if (operand == value && readsOld)
        return std::nullopt; // old rows are stashed from the store
    if (in.results.empty() || in.results[0] != value)
      continue;
    if (in.op == OpCode::Embed && in.weights.size() == 1)
      rows = TableRows{in.weights[0], -1};
    if (in.op == OpCode::VectorQuantize && in.results.size() == 2 &&
        in.weights.size() == 1 &&
        program.weights[size_t(in.weights[0])].shape.size() == 3 &&
        program.weights[size_t(in.weights[0])].shape[0] == 1 &&
        program.values[size_t(in.results[1])].keepAllRows)
      rows = TableRows{in.weights[0], in.results[1]};
  }
  return rows;
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
