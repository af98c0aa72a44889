//===- PlanCache.cpp - which values keep every row between edits ----------===//
#include "incnn/Compiler/ChangeAnalysis.h"
#include "incnn/Compiler/Passes.h"
#include "incnn/Dialect/Delta/DeltaOps.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/IR/Builders.h"

namespace incnn {
#define GEN_PASS_DEF_PLANCACHE
#include "incnn/Compiler/Passes.h.inc"
} // namespace incnn

using namespace mlir;
namespace delta = incnn::delta;
namespace vqt = incnn::vqt;

namespace {

/// Bytes per token the runtime keeps inside an op besides cached values:
/// attention keeps exact int64 accumulators per output column plus, per head,
/// the softmax normalizer, its shift and a count.
int64_t internalStateBytes(Operation *op) {
  if (auto attention = dyn_cast<vqt::AttentionOp>(op))
    return 8 * vqt::getWidth(attention.getType()) +
           16 * attention.getNumHeads();
  return 0;
}

/// The delta op that updates `op`'s results, if any.
Operation *deltaStepOf(Operation *op) {
  Operation *step = nullptr;
  for (Operation *user : op->getResult(0).getUsers())
    if (isa<delta::DeltaDialect>(user->getDialect()) &&
        !isa<delta::CacheOp>(user) && user->getBlock() == op->getBlock())
      step = user;
  return step;
}

void cache(Value value, Operation *after, int64_t &total) {
  OpBuilder builder(value.getContext());
  builder.setInsertionPointAfter(after);
  int64_t bytes = 4 * vqt::getWidth(value.getType());
  builder.create<delta::CacheOp>(value.getLoc(), value,
                                 builder.getI64IntegerAttr(bytes));
  total += bytes;
}

struct PlanCachePass : public incnn::impl::PlanCacheBase<PlanCachePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    incnn::ChangeAnalysis analysis(module);
    int64_t total = 0;
    module.walk([&](vqt::ChangeRuleOpInterface op) {
      total += internalStateBytes(op);
      Value result = op->getResult(0);
      // Place cache marks after the value's delta step, if any.
      Operation *step = deltaStepOf(op);
      Operation *after = step ? step : op.getOperation();
      // A VQ cutoff compares new codes with the old ones.
      if (auto quantize = dyn_cast<vqt::VectorQuantizeOp>(op.getOperation()))
        if (step && isa<delta::VQCutoffOp>(step)) {
          cache(quantize.getCodes(), after, total);
          ++numCached;
        }
      if (!analysis.needsAllRows(result))
        return;
      cache(result, after, total);
      ++numCached;
    });
    bytesPerToken = total;
    module->setAttr(
        "delta.cache_bytes_per_token",
        IntegerAttr::get(IntegerType::get(&getContext(), 64), total));
  }
};

} // namespace
