//===- AnnotateChangeSources.cpp - print the change analysis --------------===//
#include "incnn/Compiler/ChangeAnalysis.h"
#include "incnn/Compiler/Passes.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/IR/Builders.h"

namespace incnn {
#define GEN_PASS_DEF_ANNOTATECHANGESOURCES
#include "incnn/Compiler/Passes.h.inc"
} // namespace incnn

using namespace mlir;

namespace {
struct AnnotateChangeSourcesPass
    : public incnn::impl::AnnotateChangeSourcesBase<AnnotateChangeSourcesPass> {
  void runOnOperation() override {
    const auto &analysis = getAnalysis<incnn::ChangeAnalysis>();
    Builder builder(&getContext());
    getOperation()->walk([&](incnn::vqt::ChangeRuleOpInterface op) {
      SmallVector<Attribute> names;
      for (const auto &source : analysis.getSources(op->getResult(0)))
        names.push_back(builder.getStringAttr(analysis.describe(source)));
      op->setAttr("vqt.change_sources", builder.getArrayAttr(names));
      if (analysis.needsAllRows(op->getResult(0)))
        op->setAttr("vqt.keep_all_rows", builder.getUnitAttr());
    });
    markAllAnalysesPreserved();
  }
};
} // namespace
