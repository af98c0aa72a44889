//===- BuildProgram.h - vqt IR -> runtime program ----------------*- C++
//-*-===//
#ifndef INCNN_COMPILER_BUILDPROGRAM_H
#define INCNN_COMPILER_BUILDPROGRAM_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace incnn {
namespace checkpoint {
struct Checkpoint;
} // namespace checkpoint
namespace runtime {
struct Program;
} // namespace runtime

/// Lowers the `@forward` function of an imported vqt module to the runtime's
/// program form: one instruction per op, weights bound from `checkpoint` by
/// the names of `vqt.param` ops (F32 data is referenced, not copied, so the
/// checkpoint must outlive `program`). Returns an error message, or "".
std::string buildProgram(mlir::ModuleOp module,
                         const checkpoint::Checkpoint &checkpoint,
                         runtime::Program &program);

} // namespace incnn

#endif // INCNN_COMPILER_BUILDPROGRAM_H
