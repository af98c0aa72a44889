//===- StepHarness.h - each step alone against recomputation ----*- C++ -*-===//
//
// The differential harness of the step tests in this folder (one file per
// step file of runtime/src/steps/): checkKind runs every step of one kind
// of a random program alone, after a random edit and from scratch, and
// checks it against from-scratch evaluations (StepHarness.cpp says how).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_TEST_STEPS_STEPHARNESS_H
#define INCNN_RUNTIME_TEST_STEPS_STEPHARNESS_H

#include "ProgramBuilder.h"

#include <cstdint>
#include <string>

namespace incnn::runtime::stepstest {

/// A program configuration under test.
struct Config {
  DecoderConfig decoder;
  bool vqRecompute = false;   ///< VQ by recompute_rows (no cutoff)
  bool certificates = false;  ///< VQ margin certificates in the engine
  float codebookScale = 1.0f; ///< > 1: wide margins (certified rows)
};

/// A small program of `family` with `position` scheme: 2 layers, width 16,
/// 4 heads, room for 64 tokens.
Config small(const std::string &family, const std::string &position);

/// What the runs of checkKind exercised, for the tests to check that they
/// did.
struct StepRuns {
  int64_t checked = 0;       ///< steps run and checked
  int64_t deltaRows = 0;     ///< attention rows delta-updated, not recomputed
  int64_t cutoffRows = 0;    ///< vq_cutoff input rows whose codes stayed
  int64_t flippedRows = 0;   ///< vq_cutoff rows whose codes flipped
  int64_t certifiedRows = 0; ///< attention rows left under a certificate
  int64_t deferredRows = 0;  ///< of those, rows whose update was deferred
  /// Largest (true move of a deferred row) / (its charge): a bound weakened
  /// by a factor f > 1 / chargeUse would fail the check.
  double chargeUse = 0;
};

/// Runs every step of kind `kind` of `config`'s program alone, after a
/// random edit of a random document and from scratch, for seeds 1..`seeds`
/// (stops at the first failure).
StepRuns checkKind(StepKind kind, Config config, int seeds);

constexpr int kSeeds = 6;

} // namespace incnn::runtime::stepstest

#endif // INCNN_RUNTIME_TEST_STEPS_STEPHARNESS_H
