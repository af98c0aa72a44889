//===- DeltaOps.cpp - delta operations ------------------------------------===//
#include "incnn/Dialect/Delta/DeltaOps.h"

#include "incnn/Dialect/VQT/VQTOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace incnn::delta;
using incnn::vqt::ChangeRule;

#define GET_OP_CLASSES
#include "incnn/Dialect/Delta/DeltaOps.cpp.inc"

/// Checks that `value` is defined by a vqt op whose change rule is `rule`.
static LogicalResult
verifyStepTarget(Operation *step, Value value, ChangeRule rule,
                 ChangeRule alsoAllowed = ChangeRule::Constant) {
  auto producer = value.getDefiningOp<incnn::vqt::ChangeRuleOpInterface>();
  if (!producer)
    return step->emitOpError("updates a value that no vqt op defines");
  if (producer.getChangeRule() != rule &&
      (alsoAllowed == ChangeRule::Constant ||
       producer.getChangeRule() != alsoAllowed))
    return step->emitOpError("needs a ")
           << incnn::vqt::stringifyChangeRule(rule) << " op, but '"
           << producer->getName() << "' is "
           << incnn::vqt::stringifyChangeRule(producer.getChangeRule());
  return success();
}

OpFoldResult UnionOp::fold(FoldAdaptor) {
  if (getInputs().size() == 1)
    return getInputs().front();
  return {};
}

namespace {
/// union(a, a, union(b, c)) -> union(a, b, c).
struct FlattenUnion : public OpRewritePattern<UnionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(UnionOp op,
                                PatternRewriter &rewriter) const override {
    llvm::SetVector<Value> inputs;
    bool changed = false;
    for (Value input : op.getInputs()) {
      if (auto inner = input.getDefiningOp<UnionOp>()) {
        inputs.insert(inner.getInputs().begin(), inner.getInputs().end());
        changed = true;
      } else if (!inputs.insert(input)) {
        changed = true;
      }
    }
    if (!changed)
      return failure();
    rewriter.replaceOpWithNewOp<UnionOp>(op, op.getType(), inputs.takeVector());
    return success();
  }
};
} // namespace

void UnionOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                          MLIRContext *context) {
  patterns.add<FlattenUnion>(context);
}

LogicalResult RecomputeRowsOp::verify() {
  // A quantizer recomputed without cutoff (the no-cutoff ablation) is too.
  return verifyStepTarget(*this, getValue(), ChangeRule::TokenLocal,
                          ChangeRule::Quantizing);
}

LogicalResult AttentionUpdateOp::verify() {
  return verifyStepTarget(*this, getValue(), ChangeRule::TokenMixing);
}

LogicalResult VQCutoffOp::verify() {
  return verifyStepTarget(*this, getValue(), ChangeRule::Quantizing);
}

LogicalResult PoolUpdateOp::verify() {
  return verifyStepTarget(*this, getValue(), ChangeRule::Reducing);
}
