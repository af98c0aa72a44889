//===- VerifyProgram.cpp - checks of a program's instructions -------------===//
//
// Every id in range, every value defined once before its uses, every shape
// consistent with its opcode's rules (OpTable.def's families, or the op's
// own), then the steps (VerifySteps.cpp), then the certificate table
// (CertificateChains.cpp). A program that fails is refused, never repaired.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Program.h"

#include "CertificateChains.h"
#include "ExactAttention.h"
#include "VerifySteps.h"

#include <cfloat>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

namespace incnn::runtime {

namespace {

/// Error thrown inside the verifier and turned into a Status at its entry.
struct FormatError {
  std::string message;
};

[[noreturn]] void fail(std::string message) {
  throw FormatError{std::move(message)};
}

class Verifier {
public:
  explicit Verifier(const Program &p) : p(p) {}
  Status run();

private:
  const Program &p;
  std::vector<bool> defined;
  std::string where;

  [[noreturn]] void error(const std::string &msg) { fail(where + msg); }
  const ValueInfo &use(int32_t id);
  const ValueInfo &def(int32_t id);
  const Weight &weight(int32_t id);
  void expectCounts(const Instr &in, size_t operands, size_t resultsN,
                    size_t minWeights, size_t maxWeights);
  void expectShape(const Weight &w, std::vector<int64_t> shape,
                   const char *what);
  void expectSame(const ValueInfo &a, const ValueInfo &b, const char *what);
  void verifyInstr(const Instr &in);
  // The special ops' shape rules (the elementwise families are the table's).
  void verifyEmbed(const Instr &in);
  void verifyPositions(const Instr &in, const std::vector<ValueInfo> &ops);
  void verifyNorm(const Instr &in, const std::vector<ValueInfo> &ops);
  void verifyLinear(const Instr &in, const std::vector<ValueInfo> &ops);
  void verifyAttention(const Instr &in, const std::vector<ValueInfo> &ops);
  void verifyQuantize(const Instr &in, const std::vector<ValueInfo> &ops);
  void verifyPool(const Instr &in, const std::vector<ValueInfo> &ops);
};

const ValueInfo &Verifier::use(int32_t id) {
  if (id < 0 || size_t(id) >= p.values.size())
    error("operand value id " + std::to_string(id) + " out of range");
  if (!defined[id])
    error("value " + std::to_string(id) + " used before it is defined");
  return p.values[id];
}

const ValueInfo &Verifier::def(int32_t id) {
  if (id < 0 || size_t(id) >= p.values.size())
    error("result value id " + std::to_string(id) + " out of range");
  if (defined[id])
    error("value " + std::to_string(id) + " defined twice");
  defined[id] = true;
  return p.values[id];
}

const Weight &Verifier::weight(int32_t id) {
  if (id < 0 || size_t(id) >= p.weights.size())
    error("weight id " + std::to_string(id) + " out of range");
  return p.weights[id];
}

void Verifier::expectCounts(const Instr &in, size_t operands, size_t resultsN,
                            size_t minWeights, size_t maxWeights) {
  if (in.operands.size() != operands)
    error("expected " + std::to_string(operands) + " operands, got " +
          std::to_string(in.operands.size()));
  if (in.results.size() != resultsN)
    error("expected " + std::to_string(resultsN) + " results, got " +
          std::to_string(in.results.size()));
  if (in.weights.size() < minWeights || in.weights.size() > maxWeights)
    error("wrong number of weights (" + std::to_string(in.weights.size()) +
          ")");
}

static std::string shapeStr(const std::vector<int64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

void Verifier::expectShape(const Weight &w, std::vector<int64_t> shape,
                           const char *what) {
  if (w.shape != shape)
    error(std::string(what) + " '" + w.name + "' has shape " +
          shapeStr(w.shape) + ", expected " + shapeStr(shape));
}

void Verifier::expectSame(const ValueInfo &a, const ValueInfo &b,
                          const char *what) {
  if (a.width != b.width || a.perToken != b.perToken)
    error(std::string(what) + ": width/kind mismatch (" +
          std::to_string(a.width) + " vs " + std::to_string(b.width) + ")");
}

void Verifier::verifyInstr(const Instr &in) {
  // Resolve operands first (uses must precede the definitions).
  std::vector<ValueInfo> ops;
  for (int32_t id : in.operands)
    ops.push_back(use(id));
  for (int32_t id : in.weights)
    weight(id);

  switch (opFamily(in.op)) {
  case OpFamily::Unary:
    expectCounts(in, 1, 1, 0, 0);
    expectSame(ops[0], def(in.results[0]), "activation");
    return;
  case OpFamily::Binary:
    expectCounts(in, 2, 1, 0, 0);
    expectSame(ops[0], ops[1], "elementwise operands");
    expectSame(ops[0], def(in.results[0]), "elementwise result");
    return;
  case OpFamily::Gated: {
    expectCounts(in, 1, 1, 0, 0);
    const ValueInfo &r = def(in.results[0]);
    if (ops[0].perToken != r.perToken || ops[0].width != 2 * r.width)
      error("a gated activation halves its operand's width (" +
            std::to_string(ops[0].width) + " -> " + std::to_string(r.width) +
            ")");
    return;
  }
  case OpFamily::Special:
    break;
  }
  switch (in.op) {
  case OpCode::Embed:
    return verifyEmbed(in);
  case OpCode::AddLearnedPositions:
    return verifyPositions(in, ops);
  case OpCode::LayerNorm:
  case OpCode::RmsNorm:
    return verifyNorm(in, ops);
  case OpCode::Linear:
    return verifyLinear(in, ops);
  case OpCode::Attention:
    return verifyAttention(in, ops);
  case OpCode::VectorQuantize:
    return verifyQuantize(in, ops);
  case OpCode::Pool:
    return verifyPool(in, ops);
  default: // the elementwise families, above
    break;
  }
  error("unknown opcode " + std::to_string(uint32_t(in.op)));
}

void Verifier::verifyEmbed(const Instr &in) {
  expectCounts(in, 1, 1, 1, 2);
  const ValueInfo &r = def(in.results[0]);
  const Weight &table = p.weights[size_t(in.weights[0])];
  if (in.operands[0] != p.tokenValue)
    error("embed operand must be the token input");
  if (!r.perToken)
    error("embed result must be per token");
  if (table.shape.size() != 2 || table.shape[0] < p.vocabSize ||
      table.shape[1] != r.width)
    error("embedding table '" + table.name + "' has shape " +
          shapeStr(table.shape) + ", expected [>=" +
          std::to_string(p.vocabSize) + "," + std::to_string(r.width) + "]");
  if (in.weights.size() == 2) {
    const Weight &types = p.weights[size_t(in.weights[1])];
    if (types.shape.size() != 2 || types.shape[0] < 1 ||
        types.shape[1] != r.width)
      error("token type table '" + types.name + "' has shape " +
            shapeStr(types.shape) + ", expected [>=1," +
            std::to_string(r.width) + "]");
  }
}

void Verifier::verifyPositions(const Instr &in,
                               const std::vector<ValueInfo> &ops) {
  expectCounts(in, 1, 1, 1, 1);
  const ValueInfo &r = def(in.results[0]);
  const Weight &table = p.weights[size_t(in.weights[0])];
  expectSame(ops[0], r, "positions");
  if (!r.perToken)
    error("positions need a per-token operand");
  if (in.attrs.positionOffset < 0)
    error("negative position offset");
  int64_t rows = int64_t(p.maxPositions) + in.attrs.positionOffset;
  if (table.shape.size() != 2 || table.shape[1] != r.width ||
      table.shape[0] < rows)
    error("position table '" + table.name + "' has shape " +
          shapeStr(table.shape) + ", needs [>=" + std::to_string(rows) + "," +
          std::to_string(r.width) + "]");
}

void Verifier::verifyNorm(const Instr &in, const std::vector<ValueInfo> &ops) {
  bool ln = in.op == OpCode::LayerNorm;
  expectCounts(in, 1, 1, 1, ln ? 2 : 1);
  const ValueInfo &r = def(in.results[0]);
  expectSame(ops[0], r, "norm");
  for (int32_t w : in.weights)
    expectShape(p.weights[size_t(w)], {r.width}, "norm parameter");
  if (!(in.attrs.epsilon >= 0.0f) || !std::isfinite(in.attrs.epsilon))
    error("norm epsilon must be finite and >= 0");
}

void Verifier::verifyLinear(const Instr &in,
                            const std::vector<ValueInfo> &ops) {
  expectCounts(in, 1, 1, 1, 2);
  const ValueInfo &r = def(in.results[0]);
  if (ops[0].perToken != r.perToken)
    error("linear result kind differs from its operand");
  expectShape(p.weights[size_t(in.weights[0])], {r.width, ops[0].width},
              "linear weight");
  if (in.weights.size() == 2)
    expectShape(p.weights[size_t(in.weights[1])], {r.width}, "linear bias");
}

void Verifier::verifyAttention(const Instr &in,
                               const std::vector<ValueInfo> &ops) {
  expectCounts(in, 3, 1, 0, 0);
  const ValueInfo &r = def(in.results[0]);
  const InstrAttrs &a = in.attrs;
  for (const ValueInfo &v : ops)
    if (!v.perToken)
      error("attention operands must be per token");
  if (a.numHeads <= 0 || a.numKvHeads <= 0 || a.numHeads % a.numKvHeads)
    error("numHeads must be a positive multiple of numKvHeads");
  if (ops[0].width % a.numHeads)
    error("q width " + std::to_string(ops[0].width) +
          " is not a multiple of numHeads");
  int64_t hd = ops[0].width / a.numHeads;
  if (ops[1].width != a.numKvHeads * hd || ops[2].width != a.numKvHeads * hd)
    error("k/v width must be numKvHeads * headDim = " +
          std::to_string(a.numKvHeads * hd));
  if (!r.perToken || r.width != ops[0].width)
    error("attention result must be per token with the q width");
  if (!(a.ropeTheta >= 0.0f) || !std::isfinite(a.ropeTheta))
    error("ropeTheta must be finite and >= 0");
  if (a.ropeTheta > 0.0f && hd % 2)
    error("rotary embedding needs an even head dimension");
  if (!std::isfinite(a.scale))
    error("attention scale must be finite");
}

void Verifier::verifyQuantize(const Instr &in,
                              const std::vector<ValueInfo> &ops) {
  expectCounts(in, 1, 2, 1, 1);
  const ValueInfo &q = def(in.results[0]);
  const ValueInfo &codes = def(in.results[1]);
  expectSame(ops[0], q, "quantized result");
  const Weight &cb = p.weights[size_t(in.weights[0])];
  if (cb.shape.size() != 3 || cb.shape[0] * cb.shape[2] != q.width)
    error("codebook '" + cb.name + "' has shape " + shapeStr(cb.shape) +
          ", expected [G,K,width/G] with width " + std::to_string(q.width));
  if (codes.perToken != q.perToken || codes.width != cb.shape[0])
    error("codes result must have width G = " + std::to_string(cb.shape[0]));
}

void Verifier::verifyPool(const Instr &in, const std::vector<ValueInfo> &ops) {
  expectCounts(in, 1, 1, 0, 0);
  const ValueInfo &r = def(in.results[0]);
  if (!ops[0].perToken || r.perToken || r.width != ops[0].width)
    error("pool maps a per-token value to a vector of the same width");
  if (in.attrs.pool != PoolKind::Last && in.attrs.pool != PoolKind::Mean &&
      in.attrs.pool != PoolKind::First)
    error("unknown pool kind");
}

Status Verifier::run() {
  try {
    if (p.vocabSize <= 0)
      fail("vocabSize must be positive");
    if (p.maxPositions <= 0)
      fail("maxPositions must be positive");
    if (p.maxPositions > exact::kMaxKeys)
      fail("maxPositions " + std::to_string(p.maxPositions) +
           " exceeds the runtime's limit of " +
           std::to_string(exact::kMaxKeys) +
           " tokens (the exact attention accumulators' bound)");
    if (!p.positionScheme.empty() && p.positionScheme != "learned" &&
        p.positionScheme != "rope" && p.positionScheme != "none")
      fail("unknown position scheme '" + p.positionScheme + "'");
    for (size_t i = 0; i < p.values.size(); ++i)
      if (p.values[i].width <= 0 || p.values[i].width > kMaxValueWidth)
        fail("value " + std::to_string(i) + " has bad width " +
             std::to_string(p.values[i].width));
    for (const Weight &w : p.weights) {
      if (w.shape.empty())
        fail("weight '" + w.name + "' has no shape");
      for (int64_t d : w.shape)
        if (d <= 0)
          fail("weight '" + w.name + "' has a non-positive dimension");
      int64_t numel = w.numElements();
      if (numel < 0 || uint64_t(numel) > (uint64_t(1) << 40))
        fail("weight '" + w.name + "' is too large");
      if (!w.owned.empty() ? int64_t(w.owned.size()) != numel : !w.data)
        fail("weight '" + w.name + "' has no data of the right size");
      const float *data = w.ptr();
      if (!exact::withinBound(data, numel, FLT_MAX))
        for (int64_t i = 0; i < numel; ++i)
          if (!std::isfinite(data[i]))
            fail("weight '" + w.name + "' element " + std::to_string(i) +
                 " is " + (std::isnan(data[i]) ? "NaN" : "infinite") +
                 ": weights must be finite");
    }
    if (p.tokenValue < 0 || size_t(p.tokenValue) >= p.values.size())
      fail("token value id out of range");
    const ValueInfo &tok = p.values[p.tokenValue];
    if (tok.width != 1 || !tok.perToken)
      fail("the token value must be per token with width 1");
    defined.assign(p.values.size(), false);
    defined[p.tokenValue] = true;
    for (size_t i = 0; i < p.instrs.size(); ++i) {
      where = "instruction " + std::to_string(i) + " (" +
              opCodeName(p.instrs[i].op) + "): ";
      verifyInstr(p.instrs[i]);
    }
    where.clear();
    if (p.outputValue < 0 || size_t(p.outputValue) >= p.values.size() ||
        !defined[p.outputValue])
      fail("output value is not defined by any instruction");
    const ValueInfo &out = p.values[p.outputValue];
    if (p.task != TaskKind::CausalLM && p.task != TaskKind::Classifier &&
        p.task != TaskKind::TokenClassifier)
      fail("unknown task kind");
    if (out.perToken != (p.task == TaskKind::TokenClassifier))
      fail(out.perToken ? "only a token classifier's output is per token"
                        : "a token classifier's output must be per token");
    if (out.perToken && !out.keepAllRows)
      fail("a per-token output must keep all its rows (the cache plan)");
    if (p.task == TaskKind::CausalLM && out.width != p.vocabSize)
      fail("a causal LM's output width must equal vocabSize");
    if (!p.labels.empty() && int64_t(p.labels.size()) != out.width)
      fail("label count " + std::to_string(p.labels.size()) +
           " differs from the output width " + std::to_string(out.width));
  } catch (const FormatError &e) {
    return Status::invalidArgument(e.message);
  } catch (const std::exception &e) {
    return Status::invalidArgument(e.what());
  }
  return Status::success();
}

} // namespace

Status verifyProgram(const Program &program) {
  if (Status st = Verifier(program).run(); !st.ok())
    return st;
  if (Status st = verifySteps(program); !st.ok())
    return st;
  return verifyCertificateChains(program);
}

} // namespace incnn::runtime
