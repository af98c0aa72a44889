//===- RecomputeRows.cpp - the recompute_rows step ------------------------===//
//
// Rows of a per-token instruction are recomputed from its operands with the
// same row-invariant kernels as any other run; the result's dirty set is
// the rows recomputed. A VectorQuantize updated this way (compiled without
// VQ cutoff) re-quantizes its rows and keeps them all dirty.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "Quantize.h"
#include "StepContext.h"
#include "Steps.h"

#include <cmath>

namespace incnn::runtime {

static void runRecomputeRows(StepContext &ctx, const Step &s) {
  const Program &p = ctx.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  const Rows &rows = ctx.rowSet(s.inputs[0]);
  ctx.rowSet(s.output) = rows;
  if (in.op == OpCode::VectorQuantize) {
    QuantizedRows q = quantizeRows(ctx, index, rows);
    if (ctx.plan()) // every row it recomputes stays dirty
      ctx.codeFlipsOf(index) = int64_t(rows.size());
    ctx.storeRows(in.results[1], rows, std::move(q.codes));
    ctx.storeRows(in.results[0], rows, std::move(q.quantized));
    return;
  }
  const ValueInfo &result = p.values[size_t(in.results[0])];
  if (rows.empty()) {
    ctx.storeRows(in.results[0], rows, {});
    return;
  }
  int64_t m = int64_t(rows.size());
  std::vector<std::vector<float>> scratch(in.operands.size());
  std::vector<const float *> inputPtrs;
  for (size_t k = 0; k < in.operands.size() && in.op != OpCode::Embed; ++k) {
    int32_t v = in.operands[k];
    inputPtrs.push_back(p.values[size_t(v)].perToken
                            ? ctx.rowsOf(v, rows, scratch[k])
                            : ctx.value(v).data.data());
  }
  std::vector<int32_t> rowTokens;
  if (in.op == OpCode::Embed)
    for (int64_t r : rows)
      rowTokens.push_back(ctx.token(r));
  std::vector<float> computed;
  bool direct = false;
  float *out = ctx.destination(in.results[0], rows, computed, direct);
  runRows(p, in, &ctx.packed(index), inputPtrs.data(), m, rowTokens.data(),
          rows.data(), out,
          ctx.poolFor(double(m) * double(result.width) *
                      double(in.op == OpCode::Linear
                                 ? p.values[size_t(in.operands[0])].width
                                 : 1)));
  ctx.stats.macs += rowMacs(p, in, m);
  if (Certificate *c = ctx.certificates.ofLinear(index)) {
    // The reference norms of the certified linear layer's inputs.
    int64_t w = p.values[size_t(in.operands[0])].width;
    for (int64_t i = 0; i < m; ++i) {
      double norm = 0;
      for (int64_t k = 0; k < w; ++k)
        norm +=
            double(inputPtrs[0][i * w + k]) * double(inputPtrs[0][i * w + k]);
      c->refNorm[size_t(rows[size_t(i)])] = std::sqrt(norm);
    }
  }
  if (!direct)
    ctx.storeRows(in.results[0], rows, std::move(computed));
}

static bool recomputeRowsUpdates(const Program &p, const Instr &in) {
  return p.values[size_t(in.results[0])].perToken &&
         (isTokenLocal(in.op) || in.op == OpCode::VectorQuantize);
}

void tokenLocalCacheNeeds(const Program &p, const Step &s, CacheNeeds &needs) {
  for (int32_t v : p.instrs[size_t(s.instr)].operands) {
    needs.takesChanges(v, s.inputs[0]);
    if (!needs.recomputes(v, s.inputs[0]))
      needs.keep(v, "reads at rows the update does not recompute");
  }
}

const StepRules kRecomputeRowsStep = {recomputeRowsUpdates,
                                      tokenLocalCacheNeeds, runRecomputeRows};

} // namespace incnn::runtime
