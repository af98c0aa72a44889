//===- Passes.h - incnn compiler passes -------------------------*- C++ -*-===//
#ifndef INCNN_COMPILER_PASSES_H
#define INCNN_COMPILER_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace incnn {

#define GEN_PASS_DECL
#include "incnn/Compiler/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "incnn/Compiler/Passes.h.inc"

} // namespace incnn

#endif // INCNN_COMPILER_PASSES_H
