//===- DeltaOps.h - delta operations and types -------------------*- C++
//-*-===//
#ifndef INCNN_DIALECT_DELTA_DELTAOPS_H
#define INCNN_DIALECT_DELTA_DELTAOPS_H

#include "incnn/Dialect/Delta/DeltaDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_TYPEDEF_CLASSES
#include "incnn/Dialect/Delta/DeltaTypes.h.inc"

#define GET_OP_CLASSES
#include "incnn/Dialect/Delta/DeltaOps.h.inc"

#endif // INCNN_DIALECT_DELTA_DELTAOPS_H
