//===- Incrementalize.cpp - vqt graph -> delta change propagation ---------===//
#include "incnn/Compiler/ChangeAnalysis.h"
#include "incnn/Compiler/Passes.h"
#include "incnn/Dialect/Delta/DeltaOps.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace incnn {
#define GEN_PASS_DEF_INCREMENTALIZE
#include "incnn/Compiler/Passes.h.inc"
} // namespace incnn

using namespace mlir;
using incnn::vqt::ChangeRule;
namespace delta = incnn::delta;

namespace {

class FunctionIncrementalizer {
public:
  FunctionIncrementalizer(func::FuncOp func, bool vqCutoff, bool defer,
                          uint64_t &numSteps)
      : func(func), builder(func.getContext()), vqCutoff(vqCutoff),
        defer(defer), numSteps(numSteps) {}

  LogicalResult run() {
    Block &entry = func.getBody().front();
    builder.setInsertionPointToStart(&entry);
    Location loc = func.getLoc();
    rowsType = delta::RowsType::get(func.getContext());
    Value edited = builder.create<delta::EditedRowsOp>(loc, rowsType);
    for (BlockArgument arg : func.getArguments())
      if (incnn::vqt::isTokenIdsType(arg.getType()) ||
          incnn::vqt::isRowsType(arg.getType()))
        dirty[arg] = edited; // inputs change where the edit is

    SmallVector<Operation *> ops;
    for (Operation &op : entry)
      ops.push_back(&op);
    for (Operation *op : ops) {
      if (auto rule = dyn_cast<incnn::vqt::ChangeRuleOpInterface>(op)) {
        if (failed(step(rule)))
          return failure();
      } else if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        builder.setInsertionPoint(ret);
        for (Value result : ret.getOperands())
          builder.create<delta::OutputOp>(ret.getLoc(), result,
                                          rowsOf({result}, ret.getLoc()));
      }
    }
    return success();
  }

private:
  /// The union of the dirty sets of `values` (an empty union if none).
  Value rowsOf(ArrayRef<Value> values, Location loc) {
    SmallVector<Value> parts;
    for (Value v : values)
      if (Value rows = dirty.lookup(v))
        if (!llvm::is_contained(parts, rows))
          parts.push_back(rows);
    if (parts.size() == 1)
      return parts.front();
    if (parts.empty())
      return builder.create<delta::UnionOp>(loc, rowsType, ValueRange{});
    return builder.create<delta::UnionOp>(loc, rowsType, parts);
  }

  Value shifted(Location loc) {
    if (!shiftedRows) {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&func.getBody().front());
      shiftedRows = builder.create<delta::ShiftedRowsOp>(loc, rowsType);
    }
    return shiftedRows;
  }

  LogicalResult step(incnn::vqt::ChangeRuleOpInterface op) {
    ChangeRule rule = op.getChangeRule();
    if (rule == ChangeRule::Constant)
      return success();
    Location loc = op.getLoc();
    builder.setInsertionPointAfter(op);
    SmallVector<Value> aligned, mixed;
    for (OpOperand &operand : op->getOpOperands()) {
      if (!dirty.count(operand.get()))
        continue; // constants never change
      (op.isRowAligned(operand.getOperandNumber()) ? aligned : mixed)
          .push_back(operand.get());
    }
    Value alignedRows = rowsOf(aligned, loc);
    if (op.dependsOnPosition())
      alignedRows = builder.create<delta::UnionOp>(
          loc, rowsType, ValueRange{alignedRows, shifted(loc)});
    Value result = op->getResult(0);
    Value rows;
    switch (rule) {
    case ChangeRule::TokenLocal:
      if (!mixed.empty())
        return op.emitOpError("a token-local op cannot read other rows");
      if (incnn::vqt::isRowsType(result.getType()))
        rows = builder.create<delta::RecomputeRowsOp>(loc, rowsType, result,
                                                      alignedRows);
      else
        rows = builder.create<delta::VectorUpdateOp>(loc, rowsType, result,
                                                     alignedRows);
      break;
    case ChangeRule::TokenMixing: {
      Value keyRows = rowsOf(mixed, loc);
      if (op.dependsOnPosition())
        keyRows = builder.create<delta::UnionOp>(
            loc, rowsType, ValueRange{keyRows, shifted(loc)});
      rows = builder.create<delta::AttentionUpdateOp>(
          loc, rowsType, result, alignedRows, keyRows, defer && vqCutoff);
      break;
    }
    case ChangeRule::Quantizing:
      if (vqCutoff)
        rows = builder.create<delta::VQCutoffOp>(loc, rowsType, result,
                                                 alignedRows);
      else // the ablation: every recomputed row stays dirty
        rows = builder.create<delta::RecomputeRowsOp>(loc, rowsType, result,
                                                      alignedRows);
      break;
    case ChangeRule::Reducing:
      rows = builder.create<delta::PoolUpdateOp>(loc, rowsType, result,
                                                 rowsOf(aligned, loc));
      break;
    case ChangeRule::Constant:
      break;
    }
    ++numSteps;
    for (Value r : op->getResults())
      dirty[r] = rows;
    return success();
  }

  func::FuncOp func;
  OpBuilder builder;
  bool vqCutoff, defer;
  uint64_t &numSteps;
  Type rowsType;
  Value shiftedRows;
  llvm::DenseMap<Value, Value> dirty;
};

/// Warns about quantizers that cannot stop any change from propagating.
void warnAboutBypassedQuantizers(func::FuncOp func) {
  incnn::ChangeAnalysis analysis(func);
  func.walk([&](incnn::vqt::ChangeRuleOpInterface op) {
    if (op.getChangeRule() != ChangeRule::Quantizing)
      return;
    Operation *mixer = analysis.getBypassingMixer(op);
    if (!mixer)
      return;
    InFlightDiagnostic diag = op.emitWarning();
    diag << "this quantizer cuts no work: every use of its rows is combined "
            "with the unquantized result of "
         << analysis.describe({incnn::ChangeAnalysis::Source::Op, mixer})
         << ", which changes at every row after an edit; quantize the "
            "earlier token-mixing results too (e.g. the first layer's "
            "attention output)";
    diag.attachNote(mixer->getLoc()) << "the unquantized token-mixing op";
  });
}

struct IncrementalizePass
    : public incnn::impl::IncrementalizeBase<IncrementalizePass> {
  using IncrementalizeBase::IncrementalizeBase;
  void runOnOperation() override {
    uint64_t steps = 0;
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal() || func.getBody().getBlocks().size() != 1) {
        func.emitError("incrementalize needs single-block functions");
        return signalPassFailure();
      }
      bool hasDelta = false;
      func.walk([&](Operation *op) {
        hasDelta |= isa<delta::DeltaDialect>(op->getDialect());
      });
      if (hasDelta)
        continue; // already incrementalized
      warnAboutBypassedQuantizers(func);
      if (failed(FunctionIncrementalizer(func, vqCutoff, deferAttention, steps)
                     .run()))
        return signalPassFailure();
    }
    numSteps += steps;
  }
};

} // namespace
