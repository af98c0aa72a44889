//===- PlanCache.cpp - which values keep every row between edits ----------===//
#include "incnn/Compiler/ChangeAnalysis.h"
#include "incnn/Compiler/Passes.h"
#include "incnn/Dialect/Delta/DeltaOps.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
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

/// Whether every row of `value` is a function of its own token alone, as
/// the runtime's tokenDeterminedValues decides: an embedding without token
/// types, or a token-local op other than added positions whose row operands
/// all are (weights aside).
bool tokenDetermined(Value value) {
  Operation *def = value.getDefiningOp();
  auto rule = dyn_cast_or_null<vqt::ChangeRuleOpInterface>(def);
  if (!rule || def->getNumResults() != 1)
    return false;
  if (auto embed = dyn_cast<vqt::EmbedOp>(def))
    return !embed.getTypeTable();
  if (rule.getChangeRule() != vqt::ChangeRule::TokenLocal ||
      rule.dependsOnPosition())
    return false;
  bool anyRows = false;
  for (Value operand : def->getOperands()) {
    if (operand.getDefiningOp<vqt::ParamOp>())
      continue;
    if (!tokenDetermined(operand))
      return false;
    anyRows = true;
  }
  return anyRows;
}

/// Whether every row of `value` is a row of a table that the runtime can
/// read instead of storing (delta.cache's `from_table`; the runtime's
/// tableRowsOf): an embedding without token types, a token table the runtime
/// computes (a token-determined value at most `maxTableWidth` wide, which
/// keeps its table within the pass's limit), or a one-group VQ's codewords with
/// `codesCached` when no step reads its old rows (not an attention's or pool's
/// operand). Never the output.
bool readableFromTable(Value value, bool codesCached, int64_t maxTableWidth) {
  bool oldRowsRead = false;
  for (Operation *user : value.getUsers()) {
    if (isa<func::ReturnOp>(user))
      return false;
    oldRowsRead = oldRowsRead || isa<vqt::AttentionOp, vqt::PoolOp>(user);
  }
  Operation *def = value.getDefiningOp();
  if (auto embed = dyn_cast_or_null<vqt::EmbedOp>(def))
    return !embed.getTypeTable();
  if (auto quantize = dyn_cast_or_null<vqt::VectorQuantizeOp>(def))
    return value == quantize.getResult() && quantize.getNumGroups() == 1 &&
           codesCached && !oldRowsRead;
  return tokenDetermined(value) &&
         vqt::getWidth(value.getType()) <= maxTableWidth;
}

void cache(Value value, Operation *after, int64_t &total,
           bool fromTable = false) {
  OpBuilder builder(value.getContext());
  builder.setInsertionPointAfter(after);
  int64_t bytes = fromTable ? 0 : 4 * vqt::getWidth(value.getType());
  builder.create<delta::CacheOp>(value.getLoc(), value, bytes, fromTable);
  total += bytes;
}

struct PlanCachePass : public incnn::impl::PlanCacheBase<PlanCachePass> {
  using PlanCacheBase::PlanCacheBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    incnn::ChangeAnalysis analysis(module);
    int64_t vocab = 1;
    if (auto attr = module->getAttrOfType<IntegerAttr>("vqt.vocab_size"))
      vocab = std::max<int64_t>(1, attr.getInt());
    // The widest token table within the limit.
    int64_t tableWidth = (std::max<int64_t>(0, tokenTableMiB) << 20) /
                         int64_t(sizeof(float)) / vocab;
    int64_t total = 0;
    module.walk([&](vqt::ChangeRuleOpInterface op) {
      total += internalStateBytes(op);
      Value result = op->getResult(0);
      // Place cache marks after the value's delta step, if any.
      Operation *step = deltaStepOf(op);
      Operation *after = step ? step : op.getOperation();
      // A VQ cutoff compares new codes with the old ones.
      bool codesCached = isa<vqt::VectorQuantizeOp>(op.getOperation()) &&
                         step && isa<delta::VQCutoffOp>(step);
      if (codesCached) {
        cache(op->getResult(1), after, total);
        ++numCached;
      }
      if (!analysis.needsAllRows(result))
        return;
      cache(result, after, total,
            readableFromTable(result, codesCached, tableWidth));
      ++numCached;
    });
    bytesPerToken = total;
    module->setAttr(
        "delta.cache_bytes_per_token",
        IntegerAttr::get(IntegerType::get(&getContext(), 64), total));
  }
};

} // namespace
