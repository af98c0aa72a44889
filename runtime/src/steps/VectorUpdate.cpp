//===- VectorUpdate.cpp - the vector_update step --------------------------===//
//
// A vector instruction (the head on a pooled vector) is recomputed when its
// input changed; its dirty set is then row 0.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "StepContext.h"
#include "Steps.h"

namespace incnn::runtime {

static void runVectorUpdate(StepContext &ctx, const Step &s) {
  const Program &p = ctx.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  Rows &out = ctx.rowSet(s.output);
  out.clear();
  if (ctx.rowSet(s.inputs[0]).empty() && ctx.plan())
    return;
  std::vector<const float *> inputs;
  for (int32_t v : in.operands)
    inputs.push_back(ctx.value(v).data.data());
  const ValueInfo &result = p.values[size_t(in.results[0])];
  std::vector<float> computed(size_t(result.width));
  runRows(p, in, &ctx.packed(index), inputs.data(), 1, nullptr, nullptr,
          computed.data(), nullptr);
  ctx.stats.macs += rowMacs(p, in, 1);
  ctx.storeRows(in.results[0], {0}, std::move(computed));
  out = {0};
}

static bool vectorUpdateUpdates(const Program &p, const Instr &in) {
  return !p.values[size_t(in.results[0])].perToken && isTokenLocal(in.op);
}

const StepRules kVectorUpdateStep = {vectorUpdateUpdates, tokenLocalCacheNeeds,
                                     runVectorUpdate};

} // namespace incnn::runtime
