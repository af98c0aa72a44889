//===- AnnotateChangeRules.cpp - record each op's change rule -------------===//
#include "incnn/Compiler/Passes.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/IR/Builders.h"

namespace incnn {
#define GEN_PASS_DEF_ANNOTATECHANGERULES
#include "incnn/Compiler/Passes.h.inc"
} // namespace incnn

using namespace mlir;

namespace {
struct AnnotateChangeRulesPass
    : public incnn::impl::AnnotateChangeRulesBase<AnnotateChangeRulesPass> {
  void runOnOperation() override {
    Builder builder(&getContext());
    getOperation()->walk([&](incnn::vqt::ChangeRuleOpInterface op) {
      op->setAttr("vqt.change_rule",
                  builder.getStringAttr(
                      incnn::vqt::stringifyChangeRule(op.getChangeRule())));
      if (op.dependsOnPosition())
        op->setAttr("vqt.position_dependent", builder.getUnitAttr());
      ++numAnnotated;
    });
  }
};
} // namespace
