//===- PoolUpdateTest.cpp - pool_update alone -----------------------------===//
//
// steps/PoolUpdate.cpp against recomputation: last-token and mean pooling
// (its exact column sums too).
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, PoolUpdate) {
  for (PoolKind pool : {PoolKind::Last, PoolKind::Mean}) {
    Config c = small("llama", "rope");
    c.decoder.task = TaskKind::Classifier;
    c.decoder.pool = pool;
    EXPECT_GT(checkKind(StepKind::PoolUpdate, c, kSeeds).checked, 0);
  }
}
