//===- DeltaDialect.h - delta dialect ----------------------------*- C++
//-*-===//
#ifndef INCNN_DIALECT_DELTA_DELTADIALECT_H
#define INCNN_DIALECT_DELTA_DELTADIALECT_H

#include "mlir/IR/Dialect.h"

#include "incnn/Dialect/Delta/DeltaDialect.h.inc"

#endif // INCNN_DIALECT_DELTA_DELTADIALECT_H
