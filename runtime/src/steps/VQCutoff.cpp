//===- VQCutoff.cpp - the vq_cutoff step ----------------------------------===//
//
// The codes of the dirty rows are recomputed; rows whose codes did not
// change are not dirty downstream (early cutoff). Fresh margins give the
// rows new certificate budgets.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "Quantize.h"
#include "StepContext.h"
#include "Steps.h"

#include <cstring>

namespace incnn::runtime {

static void runVQCutoff(StepContext &ctx, const Step &s) {
  const Program &p = ctx.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  int32_t out = in.results[0], codes = in.results[1];
  const EditPlan *plan = ctx.plan();
  const Rows &rows = ctx.rowSet(s.inputs[0]);
  Certificate *c = ctx.certificates.ofVQ(index);
  QuantizedRows q = quantizeRows(ctx, index, rows, c != nullptr);
  int64_t G = q.groups, width = q.width;
  std::vector<float> &newCodes = q.codes, &quantized = q.quantized;

  // Rows whose codes flipped (or that are new) stay dirty.
  Rows flipped;
  std::vector<float> flippedRows;
  const ValueStore &oldCodes = ctx.value(codes);
  if (!plan) { // from scratch every row is new
    flipped = rows;
    flippedRows = std::move(quantized);
  }
  for (size_t i = 0; i < rows.size() && plan; ++i) {
    int64_t r = rows[i];
    bool changed = plan->from[size_t(r)] < 0 ||
                   std::memcmp(oldCodes.row(r), newCodes.data() + i * size_t(G),
                               sizeof(float) * size_t(G)) != 0;
    if (!changed)
      continue;
    flipped.push_back(r);
    flippedRows.insert(flippedRows.end(), quantized.begin() + i * width,
                       quantized.begin() + (i + 1) * width);
  }
  if (plan)
    ctx.codeFlipsOf(index) = int64_t(flipped.size());
  if (c) // every projected row is a new reference
    for (size_t i = 0; i < rows.size(); ++i) {
      int64_t r = rows[i];
      double aNorm = c->linear == SIZE_MAX ? 0.0 : c->refNorm[size_t(r)];
      ctx.certificates.setReference(*c, r, ctx.slotOf()[size_t(r)],
                                    q.distances.data() +
                                        i * size_t(G * c->codes),
                                    newCodes.data() + i * size_t(G), aNorm);
    }
  ctx.storeRows(codes, rows, std::move(newCodes));
  ctx.storeRows(out, flipped, std::move(flippedRows));
  ctx.rowSet(s.output) = std::move(flipped);
}

static bool vqCutoffUpdates(const Program &p, const Instr &in) {
  return in.op == OpCode::VectorQuantize &&
         p.values[size_t(in.results[0])].perToken;
}

static void vqCutoffCacheNeeds(const Program &p, const Step &s,
                               CacheNeeds &needs) {
  needs.takesChanges(p.instrs[size_t(s.instr)].operands[0], s.inputs[0]);
  needs.keep(p.instrs[size_t(s.instr)].results[1],
             "compares with the old codes");
}

const StepRules kVQCutoffStep = {vqCutoffUpdates, vqCutoffCacheNeeds,
                                 runVQCutoff};

} // namespace incnn::runtime
