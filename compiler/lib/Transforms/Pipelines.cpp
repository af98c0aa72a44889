//===- Pipelines.cpp - incnn pass pipelines -------------------------------===//
#include "incnn/Compiler/Pipelines.h"

#include "incnn/Compiler/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

void incnn::buildIncrementalPipeline(
    mlir::OpPassManager &pm, const IncrementalPipelineOptions &options) {
  if (options.cleanup) {
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  }
  IncrementalizeOptions incrementalize;
  incrementalize.vqCutoff = options.vqCutoff;
  incrementalize.deferAttention = options.deferAttention;
  pm.addPass(createIncrementalize(incrementalize));
  pm.addPass(createPlanCache());
  if (options.cleanup) {
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  }
}

void incnn::registerPipelines() {
  mlir::PassPipelineRegistration<>(
      "incnn-incremental-pipeline",
      "vqt graph -> vqt graph + delta change-propagation program + cache plan",
      [](mlir::OpPassManager &pm) { buildIncrementalPipeline(pm); });
}
