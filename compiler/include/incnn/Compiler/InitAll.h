//===- InitAll.h - the one registration point of incnn tools -----*- C++
//-*-===//
#ifndef INCNN_COMPILER_INITALL_H
#define INCNN_COMPILER_INITALL_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace incnn {

/// Registers the dialects incnn tools parse: vqt, delta, func.
void registerAllDialects(mlir::DialectRegistry &registry);

/// Registers incnn passes and pipelines with the global registry.
void registerAllPasses();

} // namespace incnn

#endif // INCNN_COMPILER_INITALL_H
