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

/// A one-group VQ whose codes its vq_cutoff step keeps.
bool keepsCodes(vqt::VectorQuantizeOp quantize) {
  Operation *step = deltaStepOf(quantize);
  return quantize.getNumGroups() == 1 && step && isa<delta::VQCutoffOp>(step);
}

/// What every row of a value is a function of, as the runtime's rowKeys
/// decides: its token and the codes of one-group VQs with kept codes.
struct RowKey {
  bool token = false;
  llvm::SmallVector<vqt::VectorQuantizeOp, 4> vqs;
};

/// The key of `value`: an embedding without token types is keyed by the
/// token, a one-group VQ's output (codes kept) by its code, a token-local op
/// other than added positions by its row operands' keys (weights aside).
std::optional<RowKey> rowKey(Value value) {
  Operation *def = value.getDefiningOp();
  auto rule = dyn_cast_or_null<vqt::ChangeRuleOpInterface>(def);
  if (!rule)
    return std::nullopt;
  if (auto embed = dyn_cast<vqt::EmbedOp>(def)) {
    if (embed.getTypeTable())
      return std::nullopt;
    return RowKey{true, {}};
  }
  if (auto quantize = dyn_cast<vqt::VectorQuantizeOp>(def)) {
    if (value != quantize.getResult() || !keepsCodes(quantize))
      return std::nullopt;
    return RowKey{false, {quantize}};
  }
  if (def->getNumResults() != 1 ||
      rule.getChangeRule() != vqt::ChangeRule::TokenLocal ||
      rule.dependsOnPosition())
    return std::nullopt;
  std::optional<RowKey> key;
  for (Value operand : def->getOperands()) {
    if (operand.getDefiningOp<vqt::ParamOp>())
      continue;
    std::optional<RowKey> k = rowKey(operand);
    if (!k)
      return std::nullopt;
    if (!key)
      key = RowKey{};
    key->token = key->token || k->token;
    for (vqt::VectorQuantizeOp vq : k->vqs)
      if (!llvm::is_contained(key->vqs, vq))
        key->vqs.push_back(vq);
  }
  return key;
}

/// Whether every row of `value` is a row of a table that the runtime can
/// read instead of storing (delta.cache's `from_table`; the runtime's
/// tableRowsOf): an embedding without token types, a one-group VQ's
/// codewords with `codesCached` when no step reads its old rows (not an
/// attention's or pool's operand), or a table the runtime computes for a
/// keyed value (rowKey) of at most `maxTableFloats` floats (its keys times
/// its width). Never the output.
bool readableFromTable(Value value, bool codesCached, int64_t vocab,
                       int64_t maxTableFloats) {
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
    if (value == quantize.getResult() && quantize.getNumGroups() == 1 &&
        codesCached && !oldRowsRead)
      return true;
  std::optional<RowKey> key = rowKey(value);
  if (!key)
    return false;
  int64_t floats = vqt::getWidth(value.getType());
  if (key->token)
    floats *= vocab;
  for (vqt::VectorQuantizeOp vq : key->vqs) {
    int64_t codes = cast<ShapedType>(vq.getCodebook().getType()).getShape()[1];
    if (codes <= 0 || floats > maxTableFloats / codes)
      return false;
    floats *= codes;
  }
  return floats <= maxTableFloats;
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
    // The largest computed table within the limit.
    int64_t tableFloats =
        (std::clamp<int64_t>(computedTableMiB, 0, 1 << 20) << 20) /
        int64_t(sizeof(float));
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
            readableFromTable(result, codesCached, vocab, tableFloats));
      ++numCached;
    });
    bytesPerToken = total;
    module->setAttr(
        "delta.cache_bytes_per_token",
        IntegerAttr::get(IntegerType::get(&getContext(), 64), total));
  }
};

} // namespace
