//===- DeltaDialect.cpp - delta dialect -----------------------------------===//
#include "incnn/Dialect/Delta/DeltaDialect.h"
#include "incnn/Dialect/Delta/DeltaOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace incnn::delta;

#include "incnn/Dialect/Delta/DeltaDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "incnn/Dialect/Delta/DeltaTypes.cpp.inc"

void DeltaDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "incnn/Dialect/Delta/DeltaTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "incnn/Dialect/Delta/DeltaOps.cpp.inc"
      >();
}
