//===- VectorUpdateTest.cpp - vector_update alone -------------------------===//
//
// steps/VectorUpdate.cpp against recomputation: a classifier's head on its
// pooled vector.
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, VectorUpdate) {
  Config c = small("opt", "learned");
  c.decoder.task = TaskKind::Classifier;
  EXPECT_GT(checkKind(StepKind::VectorUpdate, c, kSeeds).checked, 0);
}
