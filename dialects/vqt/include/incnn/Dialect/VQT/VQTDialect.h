//===- VQTDialect.h - vqt dialect --------------------------------*- C++
//-*-===//
//
// The vqt dialect: transformer graphs with vector-quantized values.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_DIALECT_VQT_VQTDIALECT_H
#define INCNN_DIALECT_VQT_VQTDIALECT_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

#include "incnn/Dialect/VQT/VQTDialect.h.inc"

namespace incnn::vqt {

/// `tensor<?xi32>`: one token id per row.
bool isTokenIdsType(mlir::Type type);
mlir::RankedTensorType getTokenIdsType(mlir::MLIRContext *context);
/// `tensor<?xDxf32>`: one row of width D per token.
bool isRowsType(mlir::Type type);
/// `tensor<Dxf32>`: a pooled vector.
bool isVectorType(mlir::Type type);
/// A static-shape f32 tensor (a weight).
bool isWeightType(mlir::Type type);
/// `tensor<?xGxi32>`: G codes per row.
bool isCodesType(mlir::Type type);

/// `tensor<?xWxf32>`.
mlir::RankedTensorType getRowsType(mlir::MLIRContext *context, int64_t width);
/// The width (last dimension) of a rows or vector type.
int64_t getWidth(mlir::Type type);

} // namespace incnn::vqt

#endif // INCNN_DIALECT_VQT_VQTDIALECT_H
