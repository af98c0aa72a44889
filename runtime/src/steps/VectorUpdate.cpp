//===- VectorUpdate.cpp - the vector_update step --------------------------===//
//
// A vector instruction (the head on a pooled vector) is recomputed when its
// input changed; its dirty set is then row 0.
//
//===----------------------------------------------------------------------===//
#include "../RowOps.h"
#include "../engine/Engine.h"
#include "Steps.h"

namespace incnn::runtime {

static void runVectorUpdate(Engine &e, const Step &s) {
  const Program &p = e.program;
  size_t index = size_t(s.instr);
  const Instr &in = p.instrs[index];
  Rows &out = e.rowSets[size_t(s.output)];
  out.clear();
  if (e.rowSets[size_t(s.inputs[0])].empty() && e.plan)
    return;
  std::vector<const float *> inputs;
  for (int32_t v : in.operands)
    inputs.push_back(e.values[size_t(v)].data.data());
  const ValueInfo &result = p.values[size_t(in.results[0])];
  std::vector<float> computed(size_t(result.width));
  runRows(p, in, &(*e.packed)[index], inputs.data(), 1, nullptr, nullptr,
          computed.data(), nullptr);
  e.stats.macs += rowMacs(p, in, 1);
  e.storeRows(in.results[0], {0}, std::move(computed));
  out = {0};
}

static bool vectorUpdateUpdates(const Program &p, const Instr &in) {
  return !p.values[size_t(in.results[0])].perToken && isTokenLocal(in.op);
}

const StepRules kVectorUpdateStep = {vectorUpdateUpdates, tokenLocalCacheNeeds,
                                     runVectorUpdate};

} // namespace incnn::runtime
