//===- VQTOps.cpp - vqt operations: verifiers and helpers -----------------===//
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

#include <cmath>

using namespace mlir;
using namespace incnn::vqt;

#include "incnn/Dialect/VQT/VQTEnums.cpp.inc"

#define GET_OP_CLASSES
#include "incnn/Dialect/VQT/VQTOps.cpp.inc"

static ArrayRef<int64_t> shapeOf(Value value) {
  return cast<RankedTensorType>(value.getType()).getShape();
}

/// Checks that `weight` is a vector of `width` elements.
static LogicalResult verifyVectorWeight(Operation *op, Value weight,
                                        StringRef what, int64_t width) {
  ArrayRef<int64_t> shape = shapeOf(weight);
  if (shape.size() != 1 || shape[0] != width)
    return op->emitOpError() << what << " must be tensor<" << width
                             << "xf32>, got " << weight.getType();
  return success();
}

LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError("weight name must not be empty");
  if (std::optional<int64_t> rows = getRows(); rows && *rows < 0)
    return emitOpError("rows must start at a non-negative index");
  return success();
}

LogicalResult EmbedOp::verify() {
  ArrayRef<int64_t> table = shapeOf(getTable());
  if (table.size() != 2)
    return emitOpError("table must be [vocab, width], got ")
           << getTable().getType();
  if (table[1] != getWidth(getType()))
    return emitOpError("result width ")
           << getWidth(getType()) << " does not match table width " << table[1];
  if (Value types = getTypeTable()) {
    ArrayRef<int64_t> shape = shapeOf(types);
    if (shape.size() != 2 || shape[0] < 1 || shape[1] != table[1])
      return emitOpError("type_table must be [types, ")
             << table[1] << "], got " << types.getType();
  }
  return success();
}

LogicalResult AddPositionsOp::verify() {
  ArrayRef<int64_t> table = shapeOf(getTable());
  if (table.size() != 2 || table[1] != getWidth(getInput().getType()))
    return emitOpError("table must be [positions, ")
           << getWidth(getInput().getType()) << "], got "
           << getTable().getType();
  if (getOffset() < 0 || getOffset() >= table[0])
    return emitOpError("offset ")
           << getOffset() << " out of range for a table of " << table[0]
           << " rows";
  return success();
}

// Ops that declare interface methods themselves restate the trait's rule.
ChangeRule AddPositionsOp::getChangeRule() {
  return TokenLocal<AddPositionsOp>::getChangeRule();
}
bool AddPositionsOp::dependsOnPosition() { return true; }

LogicalResult LayerNormOp::verify() {
  if (!(getEpsilon().convertToFloat() > 0.0f))
    return emitOpError("epsilon must be positive");
  int64_t width = getWidth(getInput().getType());
  if (failed(verifyVectorWeight(*this, getGamma(), "gamma", width)))
    return failure();
  if (Value beta = getBeta())
    return verifyVectorWeight(*this, beta, "beta", width);
  return success();
}

LogicalResult RmsNormOp::verify() {
  if (!(getEpsilon().convertToFloat() > 0.0f))
    return emitOpError("epsilon must be positive");
  return verifyVectorWeight(*this, getGamma(), "gamma",
                            getWidth(getInput().getType()));
}

LogicalResult LinearOp::verify() {
  ArrayRef<int64_t> weight = shapeOf(getWeight());
  if (weight.size() != 2)
    return emitOpError("weight must be [out, in], got ")
           << getWeight().getType();
  int64_t in = getWidth(getInput().getType());
  int64_t out = getWidth(getType());
  if (weight[1] != in)
    return emitOpError("weight input width ")
           << weight[1] << " does not match input width " << in;
  if (weight[0] != out)
    return emitOpError("weight output width ")
           << weight[0] << " does not match result width " << out;
  if (isRowsType(getInput().getType()) != isRowsType(getType()))
    return emitOpError("input and result must both be token rows or both be "
                       "vectors");
  if (getBias())
    return verifyVectorWeight(*this, getBias(), "bias", out);
  return success();
}

int64_t AttentionOp::getHeadDim() {
  return getWidth(getQuery().getType()) / getNumHeads();
}

float AttentionOp::getEffectiveScale() {
  if (std::optional<APFloat> scale = getScale())
    return scale->convertToFloat();
  return 1.0f / std::sqrt(static_cast<float>(getHeadDim()));
}

ChangeRule AttentionOp::getChangeRule() {
  return TokenMixing<AttentionOp>::getChangeRule();
}
bool AttentionOp::dependsOnPosition() { return getRopeTheta().has_value(); }
/// Row i reads query row i but every key and value row.
bool AttentionOp::isRowAligned(unsigned index) { return index == 0; }

LogicalResult AttentionOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  if (heads <= 0 || kvHeads <= 0)
    return emitOpError("num_heads and num_kv_heads must be positive");
  if (std::optional<uint64_t> window = getWindow(); window && *window == 0)
    return emitOpError("window must be positive");
  if (heads % kvHeads != 0)
    return emitOpError("num_heads (")
           << heads << ") must be a multiple of num_kv_heads (" << kvHeads
           << ")";
  int64_t qWidth = getWidth(getQuery().getType());
  if (qWidth % heads != 0)
    return emitOpError("query width ")
           << qWidth << " is not divisible by num_heads " << heads;
  int64_t headDim = qWidth / heads;
  int64_t kvWidth = getWidth(getKey().getType());
  if (kvWidth != kvHeads * headDim)
    return emitOpError("key/value width ")
           << kvWidth
           << " must be num_kv_heads * head_dim = " << kvHeads * headDim;
  if (std::optional<APFloat> theta = getRopeTheta()) {
    if (!(theta->convertToFloat() > 0.0f))
      return emitOpError("rope_theta must be positive");
    if (headDim % 2 != 0)
      return emitOpError("rotary embedding needs an even head_dim, got ")
             << headDim;
  }
  if (std::optional<APFloat> scale = getScale())
    if (!std::isfinite(scale->convertToFloat()))
      return emitOpError("scale must be finite");
  return success();
}

int64_t VectorQuantizeOp::getNumGroups() { return shapeOf(getCodebook())[0]; }
int64_t VectorQuantizeOp::getNumCodes() { return shapeOf(getCodebook())[1]; }

LogicalResult VectorQuantizeOp::verify() {
  ArrayRef<int64_t> codebook = shapeOf(getCodebook());
  int64_t width = getWidth(getInput().getType());
  if (codebook.size() != 3)
    return emitOpError("codebook must be [groups, codes, width / groups], got ")
           << getCodebook().getType();
  if (codebook[0] <= 0 || codebook[1] <= 0 ||
      codebook[0] * codebook[2] != width)
    return emitOpError("codebook ")
           << getCodebook().getType() << " does not split a row of width "
           << width << " into groups (need groups * group_width == width)";
  if (getWidth(getCodes().getType()) != codebook[0])
    return emitOpError("codes must have one column per group (")
           << codebook[0] << "), got " << getCodes().getType();
  return success();
}

LogicalResult incnn::vqt::verifyGatedOp(Operation *op) {
  Type in = op->getOperand(0).getType(), out = op->getResult(0).getType();
  if (isRowsType(in) != isRowsType(out))
    return op->emitOpError("input and result must both be token rows or both "
                           "be vectors");
  if (getWidth(in) != 2 * getWidth(out))
    return op->emitOpError("input width ")
           << getWidth(in) << " must be twice the result width "
           << getWidth(out);
  return success();
}

LogicalResult PoolOp::verify() {
  if (getWidth(getInput().getType()) != getWidth(getType()))
    return emitOpError("result width ")
           << getWidth(getType()) << " does not match input width "
           << getWidth(getInput().getType());
  return success();
}
