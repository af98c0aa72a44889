//===- InitAll.cpp - the one registration point of incnn tools ------------===//
#include "incnn/Compiler/InitAll.h"

#include "incnn/Compiler/Passes.h"
#include "incnn/Compiler/Pipelines.h"
#include "incnn/Dialect/Delta/DeltaDialect.h"
#include "incnn/Dialect/VQT/VQTDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"

void incnn::registerAllDialects(mlir::DialectRegistry &registry) {
  registry
      .insert<vqt::VQTDialect, delta::DeltaDialect, mlir::func::FuncDialect>();
}

void incnn::registerAllPasses() {
  registerIncnnPasses();
  registerPipelines();
}
