//===- Pipelines.h - incnn pass pipelines ------------------------*- C++
//-*-===//
#ifndef INCNN_COMPILER_PIPELINES_H
#define INCNN_COMPILER_PIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace incnn {

struct IncrementalPipelineOptions {
  /// Run canonicalize + CSE before and after incrementalization.
  bool cleanup = true;
  /// Quantizers cut unchanged codes (false: the no-cutoff ablation).
  bool vqCutoff = true;
  /// Attention updates defer certified rows (delta.attention_update defer).
  bool deferAttention = false;
};

/// vqt graph -> vqt graph + delta change-propagation program with a cache
/// plan. Used by incnn-compile, incnn-opt (`--incnn-incremental-pipeline`)
/// and the tests.
void buildIncrementalPipeline(mlir::OpPassManager &pm,
                              const IncrementalPipelineOptions &options = {});

/// Registers the pipelines with the global registry.
void registerPipelines();

} // namespace incnn

#endif // INCNN_COMPILER_PIPELINES_H
