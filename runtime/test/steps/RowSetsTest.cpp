//===- RowSetsTest.cpp - edited_rows, shifted_rows and union alone --------===//
//
// The row-set steps of steps/RowSets.cpp against their definitions: the
// rows whose token is new or different, the kept rows that moved, the
// union of random input registers; every row from scratch.
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, RowSets) {
  Config c = small("llama", "rope"); // edited, shifted and unions
  for (StepKind kind :
       {StepKind::EditedRows, StepKind::ShiftedRows, StepKind::Union})
    EXPECT_GT(checkKind(kind, c, kSeeds).checked, 0) << stepKindName(kind);
}
