//===- RowSets.cpp - edited_rows, shifted_rows and union steps ------------===//
#include "../engine/Engine.h"
#include "Steps.h"

namespace incnn::runtime {

static void runRowSetStep(Engine &e, const Step &s) {
  Rows &out = e.rowSets[size_t(s.output)];
  switch (s.kind) {
  case StepKind::EditedRows:
    out = e.plan ? e.plan->edited : allRows(e.numTokens());
    return;
  case StepKind::ShiftedRows:
    out = e.plan ? e.plan->shifted : allRows(e.numTokens());
    return;
  default: {
    Rows rows;
    for (int32_t r : s.inputs)
      rows = unite(rows, e.rowSets[size_t(r)]);
    out = std::move(rows);
    return;
  }
  }
}

const StepRules kRowSetStep = {nullptr, nullptr, runRowSetStep};

} // namespace incnn::runtime
