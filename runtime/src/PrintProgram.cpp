//===- PrintProgram.cpp - a program as text -------------------------------===//
#include "incnn/runtime/Program.h"

#include <string>

namespace incnn::runtime {

std::string printProgram(const Program &p) {
  std::string out;
  auto value = [&](int32_t id) {
    const std::string &name = p.values[size_t(id)].name;
    return "%" + std::to_string(id) + (name.empty() ? "" : "'" + name + "'");
  };
  auto rows = [](int32_t r) { return "%r" + std::to_string(r); };
  out += std::string("program ") +
         (p.task == TaskKind::Classifier ? "classifier" : "causal_lm") +
         ", max_positions " + std::to_string(p.maxPositions) + ", " +
         std::to_string(p.instrs.size()) + " instructions, " +
         std::to_string(p.steps.size()) + " steps, " +
         std::to_string(p.numRowSets) + " row sets\n";
  out += "instructions:\n";
  for (size_t i = 0; i < p.instrs.size(); ++i) {
    const Instr &in = p.instrs[i];
    out += "  @" + std::to_string(i) + " ";
    for (size_t r = 0; r < in.results.size(); ++r)
      out += (r ? ", " : "") + value(in.results[r]);
    out += std::string(" = ") + opCodeName(in.op);
    for (size_t o = 0; o < in.operands.size(); ++o)
      out += (o ? ", " : " ") + value(in.operands[o]);
    if (in.op == OpCode::Attention)
      out += std::string(in.attrs.causal ? " causal" : " bidirectional") +
             (in.attrs.window > 0 ? " window " + std::to_string(in.attrs.window)
                                  : "");
    out += "\n";
  }
  out += "steps:\n";
  for (const Step &s : p.steps) {
    out += "  " + rows(s.output) + " = " + stepKindName(s.kind);
    if (s.instr >= 0) {
      const Instr &in = p.instrs[size_t(s.instr)];
      out += " @" + std::to_string(s.instr) + " " + opCodeName(in.op) + " " +
             value(in.results[0]);
    }
    static const char *attentionInputs[] = {" query ", " keys "};
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      if (s.kind == StepKind::AttentionUpdate)
        out += attentionInputs[i];
      else if (s.kind == StepKind::Union)
        out += i ? ", " : " ";
      else
        out += " rows ";
      out += rows(s.inputs[i]);
    }
    out += "\n";
  }
  out +=
      "output: " + value(p.outputValue) + " rows " + rows(p.outputRows) + "\n";
  out += "cache: " + std::to_string(cacheBytesPerToken(p)) +
         " bytes per token, keeps";
  for (size_t v = 0; v < p.values.size(); ++v)
    if (p.values[v].perToken && p.values[v].keepAllRows &&
        int32_t(v) != p.tokenValue)
      out += " " + value(int32_t(v));
  out += "\n";
  return out;
}

} // namespace incnn::runtime
