//===- Import.h - checkpoint -> vqt IR ---------------------------*- C++
//-*-===//
#ifndef INCNN_COMPILER_IMPORT_H
#define INCNN_COMPILER_IMPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace incnn {
namespace checkpoint {
struct Checkpoint;
} // namespace checkpoint

/// Builds the vqt module of a checkpoint: one `func.func @forward` from token
/// ids to logits, with model metadata as `vqt.*` module attributes. Every
/// weight the graph uses is checked against the checkpoint's tensors. On
/// failure returns null and sets `error`.
mlir::OwningOpRef<mlir::ModuleOp>
importCheckpoint(mlir::MLIRContext &context,
                 const checkpoint::Checkpoint &checkpoint, std::string &error);

} // namespace incnn

#endif // INCNN_COMPILER_IMPORT_H
