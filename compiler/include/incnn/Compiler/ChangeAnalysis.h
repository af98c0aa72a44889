//===- ChangeAnalysis.h - which values change when rows change ---*- C++
//-*-===//
//
// For every value of a vqt function, the *change sources* whose dirty rows it
// inherits: the edited token rows, the shifted rows (position-dependent ops),
// and each op that starts a new dirty set (token-mixing, quantizing and
// reducing ops). Token-local ops inherit the union of their operands'
// sources. Driven only by ChangeRuleOpInterface.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_COMPILER_CHANGEANALYSIS_H
#define INCNN_COMPILER_CHANGEANALYSIS_H

#include "mlir/IR/Operation.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"

namespace incnn {

class ChangeAnalysis {
public:
  /// A change source: the edited tokens, the shifted positions, or the first
  /// result of an op that starts a dirty set.
  struct Source {
    enum Kind { Edited, Shifted, Op } kind;
    mlir::Operation *op = nullptr;
    bool operator==(const Source &other) const {
      return kind == other.kind && op == other.op;
    }
  };
  using SourceSet = llvm::SmallVector<Source, 4>;

  explicit ChangeAnalysis(mlir::Operation *root);

  /// Sources whose dirty rows `value` inherits (empty: never changes).
  const SourceSet &getSources(mlir::Value value) const;

  /// True if, after an edit, some user reads rows of `value` that are not in
  /// its own dirty set, so every row must be kept between edits.
  bool needsAllRows(mlir::Value value) const;

  /// For a quantizing op: a token-mixing op whose (unquantized) dirty set
  /// reaches every token-local path from `quantizer`'s result before any other
  /// kind of op reads it. Rows the quantizer keeps clean are then dirty
  /// downstream anyway, so it cuts no work. Null when it can cut work.
  mlir::Operation *getBypassingMixer(mlir::Operation *quantizer) const;

  /// A printable name of a source ("edited", "shifted", "vqt.vq#3").
  std::string describe(const Source &source) const;

private:
  static bool contains(const SourceSet &set, const Source &source);
  static void unite(SourceSet &into, const SourceSet &from);

  llvm::DenseMap<mlir::Value, SourceSet> sources;
  llvm::DenseMap<mlir::Operation *, unsigned> opNumbers;
  SourceSet empty;
};

} // namespace incnn

#endif // INCNN_COMPILER_CHANGEANALYSIS_H
