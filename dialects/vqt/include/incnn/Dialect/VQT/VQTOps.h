//===- VQTOps.h - vqt operations ---------------------------------*- C++
//-*-===//
#ifndef INCNN_DIALECT_VQT_VQTOPS_H
#define INCNN_DIALECT_VQT_VQTOPS_H

#include "incnn/Dialect/VQT/VQTDialect.h"
#include "incnn/Dialect/VQT/VQTInterfaces.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "incnn/Dialect/VQT/VQTEnums.h.inc"

namespace incnn::vqt {
/// The one verifier of every gated activation (VQT_GatedOp): rows or a
/// vector of width 2h in, the same kind of width h out.
mlir::LogicalResult verifyGatedOp(mlir::Operation *op);
} // namespace incnn::vqt

#define GET_OP_CLASSES
#include "incnn/Dialect/VQT/VQTOps.h.inc"

#endif // INCNN_DIALECT_VQT_VQTOPS_H
