//===- VQTDialect.cpp - vqt dialect ---------------------------------------===//
#include "incnn/Dialect/VQT/VQTDialect.h"
#include "incnn/Dialect/VQT/VQTOps.h"

using namespace mlir;
using namespace incnn::vqt;

#include "incnn/Dialect/VQT/VQTDialect.cpp.inc"

void VQTDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "incnn/Dialect/VQT/VQTOps.cpp.inc"
      >();
}

namespace incnn::vqt {

bool isTokenIdsType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() == 1 && tensor.isDynamicDim(0) &&
         tensor.getElementType().isSignlessInteger(32);
}

RankedTensorType getTokenIdsType(MLIRContext *context) {
  return RankedTensorType::get({ShapedType::kDynamic},
                               IntegerType::get(context, 32));
}

bool isRowsType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() == 2 && tensor.isDynamicDim(0) &&
         !tensor.isDynamicDim(1) && tensor.getElementType().isF32();
}

bool isVectorType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() == 1 && tensor.hasStaticShape() &&
         tensor.getElementType().isF32();
}

bool isWeightType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() >= 1 && tensor.hasStaticShape() &&
         tensor.getElementType().isF32();
}

bool isCodesType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() == 2 && tensor.isDynamicDim(0) &&
         !tensor.isDynamicDim(1) &&
         tensor.getElementType().isSignlessInteger(32);
}

RankedTensorType getRowsType(MLIRContext *context, int64_t width) {
  return RankedTensorType::get({ShapedType::kDynamic, width},
                               Float32Type::get(context));
}

int64_t getWidth(Type type) {
  auto tensor = cast<RankedTensorType>(type);
  return tensor.getShape().back();
}

} // namespace incnn::vqt
