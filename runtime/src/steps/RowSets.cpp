//===- RowSets.cpp - edited_rows, shifted_rows and union steps ------------===//
//
// Change rule. These steps start and merge dirty sets and touch no value.
// edited_rows: the rows whose token is new or different (EditPlan::edited);
// shifted_rows: the kept rows whose position changed (EditPlan::shifted),
// dirty for position-dependent instructions (learned positions, rotary
// attention); union: the union of its input registers. From scratch,
// edited_rows and shifted_rows hold every row.
//
//===----------------------------------------------------------------------===//
#include "StepContext.h"
#include "Steps.h"

namespace incnn::runtime {

static void runRowSetStep(StepContext &ctx, const Step &s) {
  const EditPlan *plan = ctx.plan();
  Rows &out = ctx.rowSet(s.output);
  switch (s.kind) {
  case StepKind::EditedRows:
    out = plan ? plan->edited : allRows(ctx.numTokens());
    return;
  case StepKind::ShiftedRows:
    out = plan ? plan->shifted : allRows(ctx.numTokens());
    return;
  default: {
    Rows rows;
    for (int32_t r : s.inputs)
      rows = unite(rows, ctx.rowSet(r));
    out = std::move(rows);
    return;
  }
  }
}

const StepRules kRowSetStep = {nullptr, nullptr, runRowSetStep};

} // namespace incnn::runtime
