//===- RecomputeRowsTest.cpp - recompute_rows alone -----------------------===//
//
// steps/RecomputeRows.cpp against recomputation, over every token-local op
// of both families (embeddings, learned positions, norms, linear layers,
// unary and gated activations, add, mul) and VQ compiled without cutoff.
//
//===----------------------------------------------------------------------===//
#include "StepHarness.h"

#include <gtest/gtest.h>

using namespace incnn::runtime;
using namespace incnn::runtime::stepstest;

TEST(Steps, RecomputeRows) {
  Config opt = small("opt", "learned"); // learned positions: shifted rows
  opt.decoder.activation = OpCode::Gelu;
  EXPECT_GT(checkKind(StepKind::RecomputeRows, opt, kSeeds).checked, 0);
  Config llama = small("llama", "rope");
  EXPECT_GT(checkKind(StepKind::RecomputeRows, llama, kSeeds).checked, 0);
  Config gated = small("opt", "none");
  gated.decoder.activation = OpCode::SwiGlu;
  EXPECT_GT(checkKind(StepKind::RecomputeRows, gated, kSeeds).checked, 0);
  Config vq = small("opt", "learned"); // VQ compiled without cutoff
  vq.decoder.vq = {{0, false, 2, 8}, {1, true, 4, 8}};
  vq.vqRecompute = true;
  EXPECT_GT(checkKind(StepKind::RecomputeRows, vq, kSeeds).checked, 0);
}
