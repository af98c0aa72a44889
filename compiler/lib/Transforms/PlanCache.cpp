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
/// the softmax normalizer, its shift and a count; VQ keeps its codes.
int64_t internalStateBytes(Operation *op) {
  if (auto attention = dyn_cast<vqt::AttentionOp>(op))
    return 8 * vqt::getWidth(attention.getType()) +
           16 * attention.getNumHeads();
  if (auto quantize = dyn_cast<vqt::VectorQuantizeOp>(op))
    return 4 * quantize.getNumGroups();
  return 0;
}

struct PlanCachePass : public incnn::impl::PlanCacheBase<PlanCachePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    incnn::ChangeAnalysis analysis(module);
    int64_t total = 0;
    module.walk([&](vqt::ChangeRuleOpInterface op) {
      total += internalStateBytes(op);
      Value result = op->getResult(0);
      if (!analysis.needsAllRows(result))
        return;
      // Place the cache mark after the value's delta step, if any.
      Operation *after = op;
      for (Operation *user : result.getUsers())
        if (isa<delta::DeltaDialect>(user->getDialect()) &&
            user->getBlock() == op->getBlock() && after->isBeforeInBlock(user))
          after = user;
      OpBuilder builder(op->getContext());
      builder.setInsertionPointAfter(after);
      int64_t bytes = 4 * vqt::getWidth(result.getType());
      builder.create<delta::CacheOp>(op->getLoc(), result,
                                     builder.getI64IntegerAttr(bytes));
      total += bytes;
      ++numCached;
    });
    bytesPerToken = total;
    module->setAttr(
        "delta.cache_bytes_per_token",
        IntegerAttr::get(IntegerType::get(&getContext(), 64), total));
  }
};

} // namespace
