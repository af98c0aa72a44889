//===- VQCutoffTest.cpp - vq_cutoff alone ---------------------------------===//
//
// steps/VQCutoff.cpp against recomputation: its output register must be
// exactly the rows whose codes flipped, and some edits must stop there.
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, VQCutoff) {
  Config c = small("opt", "learned");
  c.decoder.vq = {{0, false, 2, 8}, {0, true, 4, 4}, {1, true, 1, 16}};
  StepRuns plain = checkKind(StepKind::VQCutoff, c, kSeeds);
  c.certificates = true; // fresh budgets along the way
  StepRuns certified = checkKind(StepKind::VQCutoff, c, kSeeds);
  EXPECT_GT(plain.checked + certified.checked, 0);
  EXPECT_GT(plain.cutoffRows, 0);  // codes kept: the change stops
  EXPECT_GT(plain.flippedRows, 0); // codes flipped: it goes on
}
