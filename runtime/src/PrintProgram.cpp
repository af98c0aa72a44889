//===- PrintProgram.cpp - a program as text -------------------------------===//
#include "incnn/runtime/Program.h"

#include "CertificateChains.h"

#include <cstdio>
#include <string>

namespace incnn::runtime {

namespace {

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", x);
  return buf;
}

/// `  @5 attention -> @6 linear -> @7 vector_quantize: ||W||_2 <= 1.5
/// claimed, 4.2 elementwise (2.8x tighter); deferred updates`.
std::string printChain(const Program &p, const CertificateChain &c) {
  std::string out = "  @" + std::to_string(c.attention) + " attention -> ";
  if (c.linear >= 0)
    out += "@" + std::to_string(c.linear) + " linear -> ";
  out += "@" + std::to_string(c.vq) + " vector_quantize";
  if (c.linear >= 0) {
    LinearNorms norms = linearNorms(p, p.instrs[size_t(c.linear)]);
    if (usesClaimedBound(p, c, norms)) {
      out += ": ||W||_2 <= " + number(c.normBound) + " claimed, " +
             number(norms.elementwise) + " elementwise (" +
             number(norms.elementwise / c.normBound) + "x tighter)";
    } else {
      out += ": ||W||_2 <= " + number(norms.elementwise) + " elementwise";
      if (c.normBound > 0.0)
        out += " (claimed " + number(c.normBound) + ", not used)";
    }
  }
  return out + (c.defer ? "; deferred updates\n" : "\n");
}

/// " (from table)" for a value read from a weight table, " (computed table
/// by token, 1 code)" for one the runtime computes.
std::string tableNote(const Program &p, int32_t value) {
  if (!p.values[size_t(value)].tableRows)
    return "";
  std::optional<TableRows> t = tableRowsOf(p, value);
  if (!t || t->weight >= 0)
    return " (from table)";
  std::string key = t->key.token ? "token" : "";
  if (!t->codes.empty())
    key += std::string(key.empty() ? "" : ", ") +
           std::to_string(t->codes.size()) +
           (t->codes.size() == 1 ? " code" : " codes");
  return " (computed table by " + key + ")";
}

} // namespace

std::string printProgram(const Program &p) {
  std::string out;
  auto value = [&](int32_t id) {
    const std::string &name = p.values[size_t(id)].name;
    return "%" + std::to_string(id) + (name.empty() ? "" : "'" + name + "'");
  };
  auto rows = [](int32_t r) { return "%r" + std::to_string(r); };
  out += std::string("program ") + taskName(p.task) + ", max_positions " +
         std::to_string(p.maxPositions) + ", " +
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
    if (in.op == OpCode::Pool)
      out += in.attrs.pool == PoolKind::Mean    ? " mean"
             : in.attrs.pool == PoolKind::First ? " first"
                                                : " last";
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
         " bytes per token and " + std::to_string(computedTableBytes(p)) +
         " bytes of computed tables, keeps";
  for (size_t v = 0; v < p.values.size(); ++v)
    if (p.values[v].perToken && p.values[v].keepAllRows &&
        int32_t(v) != p.tokenValue)
      out += " " + value(int32_t(v)) + tableNote(p, int32_t(v));
  out += "\n";
  out += "certificates: " + std::to_string(p.certificateChains.size()) +
         " chains\n";
  for (const CertificateChain &c : p.certificateChains)
    out += printChain(p, c);
  return out;
}

} // namespace incnn::runtime
